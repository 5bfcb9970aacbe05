"""Watching a run: TensorBoard events that match the JSONL logs (purged on resume), sample
predictions per validation, and `ofa plot`'s PNG of the curves."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_trainer import tiny_config

from ofa import cli
from ofa.data.shapes import ShapesWorld
from ofa.errors import InputError
from ofa.train import Trainer, build_config
from ofa.train.distributed import DistInfo
from ofa.train.watch import TensorBoardLog, plot_run, read_log, sample_predictions


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    ShapesWorld(seed=4, image_size=32, max_shapes=2).write(out, {"train": 16, "val": 3},
                                                           progress=False)
    return out


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0,
                                                       "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_tensorboard_events_match_the_logs(shapes, bpe_dir, tmp_path):
    out = tmp_path / "run"
    valid = [{"path": str(shapes / "val.jsonl"), "tasks": ["caption", "ground", "vqa"]}]
    cfg = tiny_config(shapes, bpe_dir, out, max_updates=4, valid_interval=2,
                      tensorboard=True, tensorboard_samples=2, **{"data.valid": valid})
    Trainer(build_config(cfg), progress=False, info=DistInfo(0, 1, 0, torch.device("cpu"))
            ).train()
    train, valid_log = read_log(out / "train_log.jsonl"), read_log(out / "valid_log.jsonl")
    acc = events(out / "tensorboard")
    for key in ("loss", "acc", "lr", "gnorm"):
        assert scalars(acc, f"train/{key}") == pytest.approx(
            {r["step"]: r[key] for r in train}, rel=1e-6)
    assert [r["step"] for r in valid_log] == [2, 4]
    for key in ("caption/cider", "ground/acc@0.5", "vqa/acc"):
        assert scalars(acc, f"valid/{key}") == pytest.approx(
            {r["step"]: r[key] for r in valid_log}, rel=1e-6, abs=1e-7)
    texts = {t: acc.Tensors(t) for t in acc.Tags()["tensors"] if t.startswith("samples/")}
    assert {t.split("/")[1] for t in texts} == {"caption", "ground", "vqa"}
    table = texts["samples/caption/text_summary"][-1].tensor_proto.string_val[0].decode()
    assert table.count("\n| val-") == 2  # two samples, each a row with its record id
    images = acc.Tags()["images"]
    assert sorted(images) == ["samples/ground/0", "samples/ground/1"]
    drawn = acc.Images("samples/ground/0")[-1]
    assert (drawn.step, drawn.width, drawn.height) == (4, 32, 32)


def test_a_resumed_run_purges_what_the_killed_one_wrote_after_its_checkpoint(tmp_path):
    board = TensorBoardLog(tmp_path)
    for step in range(1, 6):
        board.train({"step": step, "loss": float(step)})
    board.close()
    board = TensorBoardLog(tmp_path, start_step=3)  # the checkpoint was at update 3
    for step in (4, 5):
        board.train({"step": step, "loss": 10.0 * step})
    board.close()
    assert scalars(events(tmp_path), "train/loss") == {1: 1.0, 2: 2.0, 3: 3.0, 4: 40.0,
                                                       5: 50.0}
    board = TensorBoardLog(tmp_path)  # a new run in the same folder: nothing of the old shows
    board.train({"step": 1, "loss": 7.0})
    board.close()
    assert scalars(events(tmp_path), "train/loss") == {1: 7.0}


def test_sample_predictions_per_task(tmp_path):
    image = tmp_path / "scene.png"
    Image.new("RGB", (40, 30), (255, 255, 255)).save(image)
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(png, format="PNG")
    records = [{"task": "caption", "id": f"c{i}", "image": str(image), "caption": f"ref {i}"}
               for i in range(3)]
    records += [{"task": "vqa", "id": "q", "image": str(image), "question": "what | is it?",
                 "answers": {"circle": 0.3, "square": 1.0}},
                {"task": "ground", "id": "g", "image": str(image), "text": "the circle",
                 "box": [2, 2, 20, 20]},
                {"task": "imagine", "id": "d", "text": "a blue square"}]
    preds = [{"task": "caption", "id": f"c{i}", "prediction": f"pred {i}"} for i in range(3)]
    preds += [{"task": "vqa", "id": "q", "prediction": "circle"},
              {"task": "ground", "id": "g", "prediction": [5.0, 5.0, 30.0, 25.0]},
              {"task": "imagine", "id": "d",
               "prediction": [base64.b64encode(png.getvalue()).decode()]}]
    texts, images = sample_predictions(records, preds, per_task=2)
    caption = texts["samples/caption"].splitlines()
    assert caption[2:] == ["| c0 |  | pred 0 | ref 0 |", "| c1 |  | pred 1 | ref 1 |"]
    assert texts["samples/vqa"].splitlines()[2] == "| q | what \\| is it? | circle | square |"
    assert texts["samples/imagine"].splitlines()[2] == "| d | a blue square | 1 image |  |"
    assert set(images) == {"samples/ground/0", "samples/imagine/0"}
    boxed = images["samples/ground/0"]
    assert boxed.shape == (30, 40, 3)
    assert tuple(boxed[5, 15]) == (255, 0, 0) and tuple(boxed[2, 10]) == (0, 200, 0)
    assert tuple(images["samples/imagine/0"][8, 8]) == (0, 0, 255)


def write_logs(run: Path, updates: int = 120, torn: bool = False) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "train_log.jsonl").open("w") as f:
        for s in range(1, updates + 1):
            f.write(json.dumps({"step": s, "loss": 5.0 / s ** 0.5, "nll": 4.0 / s ** 0.5,
                                "acc": 1 - 1 / s, "lr": 1e-3 * s / updates, "gnorm": 1.0,
                                "ntokens": 100}) + "\n")
        if torn:
            f.write('{"step": 121, "lo')
    with (run / "valid_log.jsonl").open("w") as f:
        for s in (40, 80, 120):
            f.write(json.dumps({"step": s, "caption/cider": s / 100, "vqa/acc": 0.5,
                                "score": 0.1, "best": 0.1}) + "\n")


def test_plot_renders_every_curve_to_a_png(tmp_path):
    run = tmp_path / "run"
    write_logs(run, torn=True)
    assert len(read_log(run / "train_log.jsonl")) == 120  # the torn line is skipped
    path = plot_run(run, smooth=10)
    assert path == run / "curves.png"
    with Image.open(path) as im:
        # 5 train panels + 2 validation metrics: 3 columns x 3 rows at 110 dpi
        assert im.format == "PNG" and im.size == (round(3 * 4.2 * 110), round(3 * 3.0 * 110))
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels < 128).any() and (pixels > 200).any()  # not blank
    # the CLI writes where --out says and prints the path
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()


def test_plot_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(InputError, match="has no train_log.jsonl"):
        plot_run(tmp_path)
    (tmp_path / "train_log.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no update yet"):
        plot_run(tmp_path)
    write_logs(tmp_path)
    with pytest.raises(InputError, match="smooth must be a positive integer"):
        plot_run(tmp_path, smooth=0)
    assert cli.main(["plot", str(tmp_path / "missing")]) != 0
    assert "has no train_log.jsonl" in capsys.readouterr().err


def test_missing_extras_and_bad_settings_say_what_to_do(tmp_path, monkeypatch, shapes,
                                                         bpe_dir):
    write_logs(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(InputError, match=r"pip install 'ofa-vl\[watch\]'"):
        plot_run(tmp_path)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(InputError, match=r"tensorboard: true needs .*ofa-vl\[watch\]"):
        TensorBoardLog(tmp_path / "tb")
    for key, value, message in (("tensorboard", "yes", "tensorboard must be true or false"),
                                ("tensorboard_samples", -1, "non-negative integer")):
        with pytest.raises(InputError, match=message):
            build_config(tiny_config(shapes, bpe_dir, tmp_path / "x", **{key: value}))
