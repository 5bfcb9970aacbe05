"""Text-to-image evaluation end to end on tiny synthesized files: a random OFA drawing 4 x 4
codes, a VQGAN that doubles them (8 px images), a 1-layer CLIP, and a 6-feature stand-in for
the Inception network (FID on its 2048 features takes minutes of CPU; the network itself is
tested in tests/metrics/test_image_quality.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import ofa
from ofa.errors import InputError
from ofa.imagegen.clip import CLIPReranker
from ofa.imagegen.evaluate import record_seed, run_imagegen_evaluation
from ofa.metrics.image_quality import FIDStats

from tiny_imagegen import TinyInception, numpy_fid, write_imagegen_files

RECORDS = [{"task": "imagine", "id": "1", "text": "a dog"},
           {"task": "imagine", "id": "2/b", "text": "a red dog"},
           {"task": "imagine", "id": "3", "text": "a dog"},  # a repeated caption
           # no caption: this record fails, the run goes on
           {"task": "imagine", "id": "4", "text": "  "}]


@pytest.fixture(scope="module")
def files(tmp_path_factory, bpe_dir):
    return write_imagegen_files(tmp_path_factory.mktemp("imagegen-eval"), bpe_dir,
                                code_image_size=32)


@pytest.fixture(scope="module")
def model(files):
    return ofa.load(files["model"], device="cpu")


def _references() -> list[Image.Image]:
    g = np.random.default_rng(0)
    return [Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((8, 8), (12, 10), (8, 8), (8, 8))]


def _chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def test_record_seed_is_per_id_and_in_range():
    assert record_seed(0, "a") == record_seed(0, "a")
    seeds = {record_seed(s, i) for s in (0, 1) for i in ("a", "b", "c")}
    assert len(seeds) == 6 and all(0 <= s < 2**31 for s in seeds)


@pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is None,
                    reason="torchmetrics (the imagegen extra) missing")
def test_evaluation_writes_images_scores_and_resumes(model, files, tmp_path):
    out = tmp_path / "eval"
    refs = _references()
    result = run_imagegen_evaluation(model, RECORDS, out, samples=2, top=2, seed=5,
                                     clip=files["clip"], vqgan=files["vqgan"],
                                     inception=TinyInception(), reference_images=refs,
                                     progress=False)
    assert result.computed == 4 and result.failed == 1 and "failed" in result.notes
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["1", "2/b", "3", "4"]
    assert "caption" in preds[3]["error"] and "file" not in preds[3]
    good = preds[:3]
    assert {p["seed"] for p in good} == {record_seed(5, p["id"]) for p in good}

    # the best image is on disk, and CLIP scores it as recorded, above the other sample
    clip = CLIPReranker.from_file(files["clip"])
    for p in good:
        top1 = out / p["file"]
        assert top1.parent.name == "top1" and Image.open(top1).size == (8, 8)
        ranked = sorted((out / "ranked").glob(f"{top1.stem}_*.png"))
        assert len(ranked) == 2 and ranked[0].read_bytes() == top1.read_bytes()
        rescored = clip.scores([top1, ranked[1]], p["text"])
        assert rescored[0].item() == pytest.approx(p["clip"], abs=1e-6)
        assert p["scores"] == sorted(p["scores"], reverse=True) and p["scores"][0] == p["clip"]
    assert "/" not in good[1]["file"][len("top1/"):]

    # CLIP score: mean best cosine x 100 over drawn captions; FID / IS over distinct captions
    m = result.metrics
    assert m["imagine/clip_score"] == pytest.approx(100 * np.mean([p["clip"] for p in good]))
    assert m["imagine/images_scored"] == 2  # "a dog" twice counts once
    inc = TinyInception()
    gen = inc.pool(torch.stack([_chw(Image.open(out / p["file"])) for p in good[:2]]))
    real = torch.cat([inc.pool(_chw(r)[None]) for r in refs])
    assert m["imagine/fid"] == pytest.approx(numpy_fid(gen.numpy(), real.numpy()), rel=1e-6,
                                             abs=1e-9)
    assert m["imagine/reference_images"] == 4
    assert m["imagine/inception_score"] >= 1.0 and "imagine/inception_score_std" in m
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(m)
    summary = (out / "summary.md").read_text()
    assert "CLIP score" in summary and "FID" in summary and "1 failed" in summary

    # the saved reference statistics give the same FID; a second run draws only the failure
    stats = FIDStats.load(out / "fid_reference_stats.npz")
    assert stats.count == 4 and stats.kind == "tf-fid"
    again = run_imagegen_evaluation(model, RECORDS[:3], out, samples=2, top=2, seed=5,
                                    clip=files["clip"], vqgan=files["vqgan"],
                                    inception=TinyInception(), reference_stats=stats,
                                    progress=False)
    assert again.computed == 0 and again.failed == 0
    assert again.metrics["imagine/fid"] == pytest.approx(m["imagine/fid"], rel=1e-9)
    assert again.metrics["imagine/clip_score"] == pytest.approx(m["imagine/clip_score"])

    # other settings, or another caption under the same id, are refused, not mixed in
    with pytest.raises(InputError, match="cannot resume.*samples 2 -> 3"):
        run_imagegen_evaluation(model, RECORDS[:3], out, samples=3, seed=5,
                                clip=files["clip"], vqgan=files["vqgan"], progress=False)
    changed = [{**RECORDS[0], "text": "a cat"}, *RECORDS[1:3]]
    with pytest.raises(InputError, match="cannot resume.*other inputs.*first: 1"):
        run_imagegen_evaluation(model, changed, out, samples=2, top=2, seed=5,
                                clip=files["clip"], vqgan=files["vqgan"], progress=False)


def test_clip_is_required_and_inputs_are_checked(model, files, tmp_path):
    out = tmp_path / "none"
    with pytest.raises(InputError, match="--clip"):  # none given, attached or beside it
        run_imagegen_evaluation(ofa.load(files["model"], device="cpu"), RECORDS[:1], out,
                                vqgan=files["vqgan"], samples=1, progress=False)
    assert not (out / "predictions.jsonl").exists()
    with pytest.raises(InputError, match="--inception"):
        run_imagegen_evaluation(model, RECORDS[:1], out, clip=files["clip"],
                                vqgan=files["vqgan"], reference_images=_references())
    with pytest.raises(InputError, match="samples"):
        run_imagegen_evaluation(model, RECORDS[:1], out, samples=0, clip=files["clip"])
    with pytest.raises(InputError, match="twice"):
        run_imagegen_evaluation(model, RECORDS[:1] * 2, out, clip=files["clip"])
    with pytest.raises(InputError, match="not \\['caption'\\]"):
        run_imagegen_evaluation(model, [{"task": "caption", "id": "1"}], out)
    stats = FIDStats(np.zeros(6), np.eye(6), 10, "imagenet")
    with pytest.raises(InputError, match="imagenet Inception"):
        run_imagegen_evaluation(model, RECORDS[:1], out, clip=files["clip"],
                                inception=TinyInception(), reference_stats=stats)


def test_ofa_eval_imagine_on_an_official_tsv(files, tmp_path, capsys):
    from ofa import cli

    tsv = tmp_path / "coco_vqgan_full_test.tsv"
    tsv.write_text("7\t" + " ".join(["5"] * 16) + "\ta red dog\n8\ta cat on a mat\n")
    out = tmp_path / "eval"
    argv = ["eval", "imagine", "--model", str(files["model"]), "--data", str(tsv),
            "--vqgan", str(files["vqgan"]), "--clip", str(files["clip"]), "--samples", "2",
            "--out", str(out), "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    shown = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"imagine/clip_score\t{metrics['imagine/clip_score']:.4f}" in shown
    assert sorted(p.name for p in (out / "top1").iterdir()) == ["7.png", "8.png"]
    assert cli.main(argv) == 0 and "0 drawn now" in capsys.readouterr().out  # resumed
    no_clip = [a for a in argv if a not in ("--clip", str(files["clip"]))]
    assert cli.main([*no_clip, "--no-resume"]) == 1
    err = capsys.readouterr().err
    assert "CLIP" in err and err.count("\n") == 1  # no CLIP, no CLIP score: one line
