"""ShapesWorld text-to-image records (ofa.data.shapes_codes and `ofa data shapes --vqgan`):
each caption with its image's VQGAN codes, readable as imagine training records."""

from __future__ import annotations

import json

import pytest
import torch

from ofa.cli import main
from ofa.data.records import read_jsonl
from ofa.data.shapes import ShapesWorld
from ofa.data.shapes_codes import write_imagine_records, write_world_imagine_records
from ofa.errors import InputError
from ofa.imagegen.vqgan_io import load_vqgan, preprocess

from tiny_imagegen import VQ, write_vqgan


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_records_hold_each_caption_and_its_codes(tmp_path):
    vq_dir = write_vqgan(tmp_path / "vqgan")
    world = ShapesWorld(seed=0)
    world.write(tmp_path / "shapes", {"train": 3, "test": 2}, progress=False)
    written = write_imagine_records(tmp_path / "shapes", ["train", "test"], vq_dir,
                                    progress=False)
    assert written == {s: tmp_path / "shapes" / f"{s}_imagine.jsonl" for s in ("train", "test")}
    vqgan = load_vqgan(vq_dir)
    grid = VQ.resolution // 2 ** (len(VQ.ch_mult) - 1)
    for split, count in (("train", 3), ("test", 2)):
        records = _lines(written[split])
        assert [r["id"] for r in records] == [f"{split}-{i:06d}-imagine" for i in range(count)]
        for i, r in enumerate(records):
            assert r["task"] == "imagine" and r["text"] == world.scene(split, i).caption()
            image = tmp_path / "shapes" / "images" / split / f"{i:06d}.png"
            with torch.no_grad():
                expected = vqgan.encode(preprocess(str(image), VQ.resolution))
            assert r["codes"] == expected.flatten().tolist() and len(r["codes"]) == grid**2
        # they are imagine training records as the reader checks them
        assert [r["id"] for r in read_jsonl(written[split], ["imagine"])] == \
            [r["id"] for r in records]
    again = write_imagine_records(tmp_path / "shapes", ["test"], vqgan, progress=False)
    assert _lines(again["test"]) == _lines(written["test"])  # deterministic (argmax codes)


def test_with_its_world_the_records_hold_the_codes_of_plain_scenes(tmp_path):
    from ofa.imagegen.train_vqgan import pixels_to_input, render_scenes

    vqgan = load_vqgan(write_vqgan(tmp_path / "vqgan"))
    world = ShapesWorld(seed=0)
    world.write(tmp_path / "shapes", {"train": 5}, progress=False)
    written = write_imagine_records(tmp_path / "shapes", ["train"], vqgan, progress=False,
                                    world=world)
    pixels, captions = render_scenes(world, "train", 5, VQ.resolution, plain=True)
    with torch.no_grad():
        expected = vqgan.encode(pixels_to_input(pixels)).flatten(1).tolist()
    records = _lines(written["train"])
    assert [r["codes"] for r in records] == expected
    assert [r["text"] for r in records] == captions
    # not the codes of the image files: some of those scenes have texture or jitter
    files = _lines(write_imagine_records(tmp_path / "shapes", ["train"], vqgan,
                                         progress=False)["train"])
    assert [r["codes"] for r in files] != expected
    # a world that did not write the folder is refused
    with pytest.raises(InputError, match="is not this ShapesWorld's scene"):
        write_imagine_records(tmp_path / "shapes", ["train"], vqgan, progress=False,
                              world=ShapesWorld(seed=1))


def test_far_background_gives_far_tiles_the_codes_of_the_scene_without_shapes(tmp_path):
    from ofa.imagegen.train_vqgan import (
        far_tiles,
        foreground_mask,
        pixels_to_input,
        render_scenes,
    )

    vqgan = load_vqgan(write_vqgan(tmp_path / "vqgan"))
    world = ShapesWorld(seed=0)
    world.write(tmp_path / "shapes", {"train": 6}, progress=False)
    plain = _lines(write_imagine_records(tmp_path / "shapes", ["train"], vqgan,
                                         progress=False, world=world)["train"])
    local = _lines(write_imagine_records(tmp_path / "shapes", ["train"], vqgan, progress=False,
                                         world=world, far_background=True)["train"])
    drawn, captions = render_scenes(world, "train", 6, VQ.resolution, plain=True)
    bare, _ = render_scenes(world, "train", 6, VQ.resolution, plain=True, shapeless=True)
    with torch.no_grad():
        # each alone, as the writer encodes them (in a batch a flat tile may round otherwise)
        bare_codes = torch.cat([vqgan.encode(pixels_to_input(b[None])) for b in bare]).flatten(1)
    far = far_tiles(foreground_mask(drawn, bare), vqgan.config.downsample_factor).flatten(1)
    got, kept = torch.tensor([r["codes"] for r in local]), torch.tensor([r["codes"] for r in plain])
    assert [r["text"] for r in local] == captions
    assert 0 < int(far.sum()) < far.numel()  # both kinds of tile occur
    assert torch.equal(got[far], bare_codes[far])  # far: the shapeless scene's codes
    assert torch.equal(got[~far], kept[~far])  # near the shapes: the scene's own
    assert not torch.equal(got, kept)  # this tokenizer's shapes do reach far tiles
    with pytest.raises(InputError, match="far_background needs the ShapesWorld"):
        write_imagine_records(tmp_path / "shapes", ["train"], vqgan, progress=False,
                              far_background=True)


def test_records_straight_from_the_world_are_those_of_its_folder(tmp_path):
    vqgan = load_vqgan(write_vqgan(tmp_path / "vqgan"))
    world = ShapesWorld(seed=0)
    world.write(tmp_path / "shapes", {"train": 4, "test": 3}, progress=False)
    for far in (False, True):
        folder = write_imagine_records(tmp_path / "shapes", ["train", "test"], vqgan,
                                       progress=False, world=world, far_background=far)
        direct = write_world_imagine_records(world, tmp_path / f"direct-{far}",
                                             {"train": 4, "test": 3}, vqgan,
                                             far_background=far, progress=False)
        for split in ("train", "test"):
            assert direct[split].read_bytes() == folder[split].read_bytes()
        assert sorted(p.name for p in (tmp_path / f"direct-{far}").iterdir()) == \
            ["test_imagine.jsonl", "train_imagine.jsonl"]


def test_a_folder_without_records_is_an_input_error(tmp_path):
    vq_dir = write_vqgan(tmp_path / "vqgan")
    with pytest.raises(InputError, match="dataset file not found"):
        write_imagine_records(tmp_path, ["train"], vq_dir, progress=False)
    (tmp_path / "train.jsonl").write_text('{"task": "caption", "id": "x"\n')
    with pytest.raises(InputError, match="train.jsonl"):  # a torn line names the file
        write_imagine_records(tmp_path, ["train"], vq_dir, progress=False)


def test_cli_writes_imagine_records_with_vqgan(tmp_path, capsys):
    vq_dir = write_vqgan(tmp_path / "vqgan")
    out = tmp_path / "shapes"
    assert main(["data", "shapes", str(out), "--train", "2", "--val", "0", "--test", "1",
                 "--vqgan", str(vq_dir), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train_imagine.jsonl" in printed and "test_imagine.jsonl" in printed
    assert len(_lines(out / "train_imagine.jsonl")) == 2
    assert not (out / "val_imagine.jsonl").exists()
    # a missing VQGAN is refused before any rendering
    assert main(["data", "shapes", str(tmp_path / "other"), "--train", "1", "--vqgan",
                 str(tmp_path / "nothing")]) == 1
    assert "VQGAN checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert main(["data", "shapes", str(tmp_path / "other"), "--train", "1",
                 "--far-background"]) == 1
    assert "--far-background needs --vqgan" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert main(["data", "shapes", str(tmp_path / "other"), "--train", "1",
                 "--imagine-only"]) == 1
    assert "--imagine-only needs --vqgan" in capsys.readouterr().err
    # --imagine-only: the imagine records alone, the same as the folder's
    only = tmp_path / "only"
    assert main(["data", "shapes", str(only), "--train", "2", "--val", "0", "--test", "1",
                 "--vqgan", str(vq_dir), "--imagine-only"]) == 0
    assert f"train: 2 scenes -> {only / 'train_imagine.jsonl'}" in capsys.readouterr().out
    assert sorted(p.name for p in only.iterdir()) == ["test_imagine.jsonl",
                                                      "train_imagine.jsonl"]
    assert (only / "train_imagine.jsonl").read_bytes() == \
        (out / "train_imagine.jsonl").read_bytes()
