"""`ofa data shapes`, `ofa train` and `ofa eval` from the command line."""

from __future__ import annotations

import json

from ofa import cli


def test_data_shapes_writes_splits(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert cli.main(["data", "shapes", str(out), "--train", "3", "--val", "2", "--test", "0",
                     "--image-size", "48"]) == 0
    assert "train: 3 scenes" in capsys.readouterr().out
    records = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert {r["task"] for r in records} >= {"caption", "vqa", "ground", "entail", "classify"}
    assert (out / records[0]["image"]).is_file() and not (out / "test.jsonl").exists()


def test_train_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 8\nlerning_rate: 1\n")
    assert cli.main(["train", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ofa: error:") and "lerning_rate" in err and "\n" not in err
    assert cli.main(["train", str(tmp_path / "missing.yaml")]) == 1
    assert "config file not found" in capsys.readouterr().err
    assert cli.main(["train", str(bad), "--set", "novalue"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_eval_on_records_writes_metrics(tmp_path, capsys):
    out = tmp_path / "shapes"
    cli.main(["data", "shapes", str(out), "--train", "0", "--val", "0", "--test", "3"])
    capsys.readouterr()
    assert cli.main(["eval", "--model", "shapes-demo", "--data", str(out / "test.jsonl"),
                     "--vqa-answers", str(out / "answers.txt"), "--device", "cpu",
                     "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) >= {"caption/bleu4", "vqa/acc", "ground/acc@0.5", "entail/acc",
                            "classify/acc"}
    assert all(0.0 <= v <= 10.0 for v in metrics.values())
    assert f"vqa/acc\t{metrics['vqa/acc']:.4f}" in printed
    preds = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == len((out / "test.jsonl").read_text().splitlines())
