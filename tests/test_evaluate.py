"""The evaluation runner: the same figures as training's validation, resumable runs, torchrun
sharding with a merge, summary and submission files, and `ofa eval` errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofa import cli
from ofa.api import load
from ofa.data.records import read_jsonl
from ofa.data.shapes import VQA_ANSWERS, ShapesWorld
from ofa.errors import InputError
from ofa.evaluate import (
    check_ids,
    evaluate_records,
    read_predictions,
    run_evaluation,
    run_identity,
    score_predictions,
    summary_table,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    return load("shapes-demo", device="cpu")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """Two held-out ShapesWorld scenes (every task), written as JSONL records."""
    root = tmp_path_factory.mktemp("shapes")
    paths = ShapesWorld(seed=3).write(root, {"test": 2}, progress=False)
    return paths["test"]


@pytest.fixture(scope="module")
def records(shapes):
    return read_jsonl(shapes)


@pytest.fixture(scope="module")
def reference(demo, records):
    """Metrics and predictions of one uninterrupted, in-memory evaluation."""
    return evaluate_records(demo, records, vqa_answers=VQA_ANSWERS, batch_size=8, full=True)


def test_run_writes_the_same_figures_as_validation(demo, records, reference, tmp_path):
    metrics, preds = reference
    result = run_evaluation(demo, records, tmp_path, vqa_answers=VQA_ANSWERS, batch_size=8,
                            progress=False)
    assert result.metrics == metrics
    assert result.predictions == preds
    assert result.computed == len(records)
    assert set(metrics) >= {"caption/bleu4", "caption/cider", "vqa/acc", "ground/acc@0.5",
                            "entail/acc", "classify/acc"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert list(read_predictions(tmp_path / "predictions.jsonl").values()) == preds
    summary = (tmp_path / "summary.md").read_text()
    assert f"| vqa | {result.counts['vqa']} | acc | {100 * metrics['vqa/acc']:.2f} |" in summary


def test_interrupted_run_resumes_from_written_predictions(demo, records, reference, tmp_path):
    _, preds = reference
    keep = 7
    lines = [json.dumps(p) for p in preds[:keep]]
    # a run killed mid-write leaves a torn last line, and the run.json it began with
    (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:15])
    labels = sorted({r["label"] for r in records if r["task"] == "classify"})
    identity = run_identity(demo, vqa_answers=VQA_ANSWERS, class_names=labels)
    (tmp_path / "run.json").write_text(json.dumps(identity))
    result = run_evaluation(demo, records, tmp_path, vqa_answers=VQA_ANSWERS, batch_size=8,
                            chunk_size=5, progress=False)
    assert result.computed == len(records) - keep
    assert result.predictions == preds
    assert result.metrics == reference[0]
    # a finished run resumes to nothing; --no-resume starts over
    again = run_evaluation(demo, records, tmp_path, vqa_answers=VQA_ANSWERS, progress=False)
    assert again.computed == 0 and again.metrics == reference[0]
    fresh = run_evaluation(demo, records[:3], tmp_path, vqa_answers=VQA_ANSWERS,
                           resume=False, progress=False)
    assert fresh.computed == 3


def test_torchrun_shards_and_merges(shapes, reference, tmp_path):
    out = tmp_path / "eval"
    answers = tmp_path / "answers.txt"
    answers.write_text("\n".join(VQA_ANSWERS) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", "-m", "ofa.cli", "eval", "--model", "shapes-demo",
           "--data", str(shapes), "--vqa-answers", str(answers), "--device", "cpu",
           "--batch-size", "8", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "predicted now" in proc.stdout
    metrics, preds = reference
    merged = list(read_predictions(out / "predictions.jsonl").values())
    assert merged == json.loads(json.dumps(preds))  # record order, tuples as lists
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    assert not list(out.glob("predictions.rank*.jsonl"))


def test_vqa_official_accuracy_and_submission(tmp_path):
    class Fixed:  # stands in for a model: answers every question "2"
        def run(self, task, images, question, **_):
            return [{"answer": "2"} for _ in question]

    humans = ["two"] * 2 + ["3"] * 8
    recs = [{"task": "vqa", "id": "q1", "question_id": 11, "image": "x.png",
             "question": "how many?", "human_answers": humans, "answers": {"2": 0.6}},
            {"task": "vqa", "id": "q2", "question_id": 12, "image": "x.png",
             "question": "how many?"}]  # test-dev: no answers
    result = run_evaluation(Fixed(), recs, tmp_path, progress=False)  # type: ignore[arg-type]
    # "two" normalises to "2": two of ten humans agree -> 0.6 (official), q2 is not scored
    assert result.metrics == {"vqa/acc": pytest.approx(0.6)}
    sub = json.loads((tmp_path / "vqa_submission.json").read_text())
    assert sub == [{"question_id": 11, "answer": "2"}, {"question_id": 12, "answer": "2"}]


def test_scores_are_checked_against_hand_counts():
    recs = [{"task": "ground", "id": "a", "box": [0, 0, 10, 10]},
            {"task": "ground", "id": "b", "box": [0, 0, 10, 10]},
            {"task": "entail", "id": "c", "label": "entailment"},
            {"task": "entail", "id": "d", "label": "neutral"}]
    preds = [{"prediction": [0, 0, 10, 5]},  # IoU 0.5 counts
             {"prediction": [0, 0, 10, 4]},  # IoU 0.4 does not
             {"prediction": "entailment"}, {"prediction": "contradiction"}]
    assert score_predictions(recs, preds) == {"ground/acc@0.5": 0.5, "entail/acc": 0.5}
    with pytest.raises(InputError, match="3 predictions for 4"):
        score_predictions(recs, preds[:3])


def test_ids_must_be_unique_and_present():
    with pytest.raises(InputError, match="'a' appears twice"):
        check_ids([{"id": "a"}, {"id": "a"}])
    with pytest.raises(InputError, match="needs an 'id'"):
        check_ids([{"task": "caption"}])


def test_summary_puts_the_primary_metric_first():
    text = summary_table({"caption/bleu4": 0.4, "caption/cider": 1.4}, {"caption": 5}, "m")
    rows = [r for r in text.splitlines() if r.startswith("| caption")]
    assert rows == ["| caption | 5 | cider | 140.00 |", "| caption | 5 | bleu4 | 40.00 |"]


def test_eval_command_errors(tmp_path, capsys):
    bad = tmp_path / "data.json"
    bad.write_text("{}")
    assert cli.main(["eval", "--model", "shapes-demo", "--data", str(bad)]) == 1
    assert "without TASK, --data must be JSONL records" in capsys.readouterr().err
    good = tmp_path / "r.jsonl"
    good.write_text('{"task": "classify", "image": "x.png", "label": "a"}\n')
    assert cli.main(["eval", "--model", "shapes-demo", "--data", str(good),
                     "--limit", "0"]) == 1
    assert "--limit must be a positive integer" in capsys.readouterr().err


def test_eval_vqav2_files_with_the_official_answer_pickle(tmp_path, capsys):
    """`ofa eval vqa` on VQAv2-format files (ShapesWorld scenes as COCO images), with the
    candidate answers from an ans2label pickle; scored with the official accuracy."""
    import pickle

    from ofa.metrics import mean_vqa_accuracy

    world = ShapesWorld(seed=5)
    (tmp_path / "val2014").mkdir()
    questions, annotations = [], []
    for image_id in range(2):
        scene = world.scene("test", image_id)
        scene.render().save(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
        for k, (q, a) in enumerate(scene.questions()[:3]):
            qid = image_id * 10 + k
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            humans = [a] * 7 + ["zero"] * 3
            annotations.append({"image_id": image_id, "question_id": qid,
                                "answers": [{"answer": h, "answer_confidence": "yes",
                                             "answer_id": i + 1} for i, h in enumerate(humans)],
                                "multiple_choice_answer": a})
    qfile = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    qfile.write_text(json.dumps({"questions": questions, "data_subtype": "val2014"}))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": annotations}))
    pkl = tmp_path / "trainval_ans2label.pkl"
    pkl.write_bytes(pickle.dumps({a: i for i, a in enumerate(VQA_ANSWERS)}))
    out = tmp_path / "eval"
    assert cli.main(["eval", "vqa", "--model", "shapes-demo", "--data", str(qfile),
                     "--vqa-answers", str(pkl), "--device", "cpu", "--out", str(out),
                     "--no-progress"]) == 0
    assert "(vqav2)" in capsys.readouterr().out
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["question_id"] for p in preds] == [q["question_id"] for q in questions]
    assert all(p["prediction"] in VQA_ANSWERS for p in preds)
    humans = [[x["answer"] for x in a["answers"]] for a in annotations]
    expected = mean_vqa_accuracy([p["prediction"] for p in preds], humans)
    assert json.loads((out / "metrics.json").read_text()) == {"vqa/acc": expected}
    sub = json.loads((out / "vqa_submission.json").read_text())
    assert sub == [{"question_id": p["question_id"], "answer": p["prediction"]} for p in preds]


def test_answer_pickle_with_code_is_refused(tmp_path, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    pkl = tmp_path / "ans2label.pkl"
    pkl.write_bytes(pickle.dumps(Evil()))
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    recs = tmp_path / "r.jsonl"
    recs.write_text('{"task": "vqa", "image": "x.png", "question": "q?", "answer": "a"}\n')
    assert cli.main(["eval", "--model", "shapes-demo", "--data", str(recs),
                     "--vqa-answers", str(pkl)]) == 1
    err = capsys.readouterr().err
    assert "ofa: error:" in err and "posix.system" in err and "pwned" not in err


def test_all_candidate_vqa_needs_answers(tmp_path, capsys):
    recs = tmp_path / "r.jsonl"
    recs.write_text('{"task": "vqa", "image": "x.png", "question": "q?", "answer": "a"}\n')
    assert cli.main(["eval", "--model", "shapes-demo", "--data", str(recs),
                     "--vqa-mode", "all"]) == 1
    assert "give them with --vqa-answers" in capsys.readouterr().err



def _vqa_records(records, n=3):
    return [dict(r) for r in records if r["task"] == "vqa"][:n]


def test_resume_refuses_predictions_of_another_model_settings_or_inputs(demo, records,
                                                                        tmp_path):
    import copy

    import torch

    from ofa.api import OFA

    recs = _vqa_records(records)
    opts = {"vqa_answers": VQA_ANSWERS, "progress": False}
    first = run_evaluation(demo, recs, tmp_path, **opts)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["model"] == "shapes-demo" and run["dtype"] == "float32" and run["weights"]
    assert all(p["digest"] for p in first.predictions)
    # the same architecture with other weights, under the same name: the weights decide
    model = copy.deepcopy(demo.model)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    other = OFA(model, demo.tokenizer, name="shapes-demo", task=demo.task,
                image_size=demo.image_size)
    with pytest.raises(InputError, match=r"cannot resume in .*: its predictions were made "
                                         r"with model shapes-demo \[weights \w+\] -> "
                                         r"shapes-demo \[weights \w+\]; pass --no-resume"):
        run_evaluation(other, recs, tmp_path, **opts)
    with pytest.raises(InputError, match="vqa_answers [0-9a-f]+ -> [0-9a-f]+"):
        run_evaluation(demo, recs, tmp_path, vqa_answers=VQA_ANSWERS[:5], progress=False)
    with pytest.raises(InputError, match="vqa_mode beam -> all"):
        run_evaluation(demo, recs, tmp_path, vqa_mode="all", **opts)
    changed = [dict(recs[0], question="what color is the circle?"), *recs[1:]]
    with pytest.raises(InputError, match=f"1 of its predictions were made for other inputs "
                                         f"under the same ids \\(first: {recs[0]['id']}\\)"):
        run_evaluation(demo, changed, tmp_path, **opts)
    # a corrected reference is not another input: the predictions still hold
    fixed = [dict(recs[0], answers={"blue": 1.0}), *recs[1:]]
    assert run_evaluation(demo, fixed, tmp_path, **opts).computed == 0
    # starting afresh is explicit, and says how much it threw away
    fresh = run_evaluation(other, recs, tmp_path, resume=False, **opts)
    assert fresh.discarded == 3 and fresh.computed == 3
    assert run_evaluation(other, recs, tmp_path, **opts).computed == 0
    # predictions with no record of what made them (an older version) are not trusted
    (tmp_path / "run.json").unlink()
    with pytest.raises(InputError, match="holds 3 predictions but no run.json"):
        run_evaluation(other, recs, tmp_path, **opts)


def test_unreadable_image_fails_its_record_and_counts_as_wrong(demo, records, tmp_path):
    from PIL import Image

    recs = _vqa_records(records)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n and then nothing an image needs")
    recs[1]["image"] = str(bad)
    out = tmp_path / "out"
    result = run_evaluation(demo, recs, out, vqa_answers=VQA_ANSWERS, progress=False)
    assert result.computed == 3 and result.failed == 1
    failed = result.predictions[1]
    assert failed["prediction"] is None and "bad.png" in failed["error"]
    assert read_predictions(out / "predictions.jsonl")[recs[1]["id"]]["error"] == failed["error"]
    # the failed record scores 0 and still counts in the denominator
    hits = sum(r["answers"].get(p["prediction"], 0.0)
               for r, p in zip(recs, result.predictions, strict=True) if not p.get("error"))
    assert result.metrics["vqa/acc"] == pytest.approx(hits / 3)
    note = "1 of 3 records failed (see 'error' in predictions.jsonl) and are counted as wrong"
    assert result.notes["vqa/failed"] == note
    assert note in (out / "summary.md").read_text()
    # the next run retries only the failed record
    Image.new("RGB", (64, 64)).save(bad)
    again = run_evaluation(demo, recs, out, vqa_answers=VQA_ANSWERS, progress=False)
    assert again.computed == 1 and again.failed == 0 and "vqa/failed" not in again.notes


def test_failed_questions_hold_back_the_submission_file(tmp_path):
    class HalfBroken:  # stands in for a model: answers "2", or fails as a corrupt image would
        def run(self, task, images, **_):
            return [{"input": i, "error": f"image file {i} is corrupt or truncated"}
                    if i == "bad.png" else {"answer": "2"} for i in images]

    recs = [{"task": "vqa", "id": f"q{k}", "question_id": k, "image": image,
             "question": "how many?", "answers": {"2": 1.0}}
            for k, image in enumerate(["x.png", "bad.png"])]
    stale = tmp_path / "vqa_submission.json"
    stale.write_text("[]")
    result = run_evaluation(HalfBroken(), recs, tmp_path, progress=False)  # type: ignore[arg-type]
    assert result.metrics == {"vqa/acc": 0.5} and result.failed == 1
    assert "vqa_submission" not in result.files and not stale.exists()
    assert "1 of 2 questions failed" in result.notes["vqa/submission"]


def test_eval_command_reports_failures_and_refuses_a_mismatched_resume(shapes, tmp_path,
                                                                      capsys):
    recs = _vqa_records(read_jsonl(shapes), 2)  # image paths made absolute
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    recs[1]["image"] = str(bad)
    data = tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "eval"
    argv = ["eval", "--model", "shapes-demo", "--data", str(data), "--device", "cpu",
            "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert (f"failed: 1 of 2 records, counted as wrong (errors in predictions.jsonl; the next "
            f"run retries them); first: {recs[1]['id']}: image file {bad} is not a readable "
            "image file") in captured.out
    assert "Traceback" not in captured.err
    # resuming with other settings stops with one line and leaves the files alone
    before = (out / "predictions.jsonl").read_text()
    assert cli.main([*argv, "--dtype", "bfloat16"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dtype float32 -> bfloat16; pass --no-resume" in err
    assert (out / "predictions.jsonl").read_text() == before
    assert cli.main([*argv, "--no-resume"]) == 0
    assert "discarded 2 earlier predictions" in capsys.readouterr().err
