"""Text-to-image end to end on small synthesized files laid out as a user gets them: an OFA
model folder, a taming-layout VQGAN (model.yaml + last.ckpt) and a CLIP state dict with its
BPE vocabulary; through the API and through ``ofa imagine``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ofa
from ofa import cli
from ofa.errors import InputError
from ofa.imagegen.imagine import generation_config
from ofa.imagegen.vqgan import VQGAN

from tiny_imagegen import VQ, write_imagegen_files

# 8 x 8 codes (code_image_size 64), decoded by a VQGAN that doubles them: 16 px images


@pytest.fixture(scope="module")
def files(tmp_path_factory, bpe_dir) -> dict[str, Path]:
    return write_imagegen_files(tmp_path_factory.mktemp("imagine"), bpe_dir)


@pytest.fixture(scope="module")
def model(files):
    return ofa.load(files["model"], device="cpu")


def test_official_sampling_settings():
    cfg = generation_config(24, 0)
    assert (cfg.beam_size, cfg.nbest, cfg.sampling, cfg.top_k, cfg.temperature) == \
        (24, 24, True, 256, 1.0)
    assert (cfg.min_len, cfg.max_len_a, cfg.max_len_b) == (1024, 0, 1024)
    assert cfg.constraint_range == (50265, 58457) and cfg.gen_code


def test_imagine_ranks_by_clip_and_is_reproducible(model, files):
    r = model.imagine("a dog", vqgan=files["vqgan"], clip=files["clip"], samples=4, top=2,
                      seed=3)
    assert r.ranked_by == "clip" and len(r.images) == 2 and r.scores[0] >= r.scores[1]
    assert r.images[0].size == (16, 16) and r.codes.shape == (2, 8, 8)
    assert bool(((r.codes >= 0) & (r.codes < 8192)).all())
    again = model.imagine("a dog", vqgan=files["vqgan"], clip=files["clip"], samples=4,
                          top=2, seed=3)
    assert torch.equal(r.codes, again.codes) and r.scores == again.scores
    other = model.imagine("a dog", vqgan=files["vqgan"], rank="logprob", samples=4, top=4,
                          seed=4)
    assert other.ranked_by == "logprob" and other.scores == sorted(other.scores, reverse=True)
    assert not torch.equal(other.codes[:2], r.codes)


def test_cli_writes_pngs_and_scores(files, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["imagine", "a dog", "--model", str(files["model"]), "--vqgan",
                     str(files["vqgan"]), "--clip", str(files["clip"]), "--out", str(out),
                     "--samples", "3", "--top", "2", "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((out / "scores.json").read_text())
    assert meta["ranked_by"] == "clip" and [i["file"] for i in meta["images"]] == \
        ["0.png", "1.png"]
    assert (out / "0.png").is_file() and (out / "1.png").is_file()


def test_bad_inputs_give_one_line(model, files, tmp_path, capsys):
    with pytest.raises(InputError, match="empty"):
        model.imagine("   ", vqgan=files["vqgan"], rank="logprob")
    with pytest.raises(InputError, match="VQGAN"):  # none attached, none beside the model
        ofa.load(files["model"], device="cpu").imagine("a dog")
    with pytest.raises(InputError, match="samples"):
        model.imagine("a dog", vqgan=files["vqgan"], rank="logprob", samples=0)
    wrong = tmp_path / "wrong"
    (wrong / "configs").mkdir(parents=True)
    (wrong / "configs" / "model.yaml").write_text((files["vqgan"] / "configs" /
                                                   "model.yaml").read_text())
    state = VQGAN(VQ).state_dict()
    state["post_quant_conv.weight"] = torch.zeros(3, 3, 1, 1)
    (wrong / "checkpoints").mkdir()
    torch.save({"state_dict": state}, wrong / "checkpoints" / "last.ckpt")
    code = cli.main(["imagine", "a dog", "--model", str(files["model"]), "--vqgan", str(wrong),
                     "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress",
                     "--rank", "logprob"])
    err = capsys.readouterr().err
    assert code == 1 and "post_quant_conv.weight" in err and err.count("\n") == 1
    code = cli.main(["imagine", "a dog", "--model", str(files["model"]), "--vqgan",
                     str(files["vqgan"]), "--clip", str(tmp_path / "missing.pt"),
                     "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "missing.pt" in err and err.count("\n") == 1


def test_a_draw_folder_beside_the_model_draws(files, tmp_path, bpe_dir):
    """A model that captions but does not draw may ship its drawing model in ``draw/``: that
    one draws, the captioner ranks; a drawing model of another vocabulary is refused."""
    import shutil

    from ofa.checkpoints import save_native
    from ofa.errors import CheckpointError
    from ofa.imagegen.imagine import imagine
    from ofa.model import OFAModel

    from conftest import tiny_config

    folder = tmp_path / "captioner"
    shutil.copytree(files["model"], folder)
    shutil.copytree(files["vqgan"], folder / "vqgan")
    save_native(OFAModel(tiny_config(vocab_size=60000)), folder / "draw")
    with pytest.raises(CheckpointError, match="share one tokenizer"):
        ofa.load(folder, device="cpu").imagine("a dog", samples=2)
    shutil.rmtree(folder / "draw")
    torch.manual_seed(7)
    drawer = OFAModel(tiny_config(code_image_size=64)).eval()
    save_native(drawer, folder / "draw")
    m = ofa.load(folder, device="cpu")
    r = m.imagine("a dog", samples=3, top=3, seed=1, rank="caption")
    assert m.drawing_model() is not m.model and r.ranked_by == "caption"
    direct = imagine(drawer, m.tokenizer, "a dog", m.parts["vqgan"], None, samples=3, top=3,
                     seed=1)
    assert sorted(map(tuple, r.codes.flatten(1).tolist())) == sorted(
        map(tuple, direct.codes.flatten(1).tolist()))
