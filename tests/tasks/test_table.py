"""The task table: every task has one name, and every layer that lists tasks lists the
table's (a new task that misses a layer fails here)."""

import argparse

import pytest

from ofa import cli
from ofa.data.records import REQUIRED_FIELDS, TASK_NAMES
from ofa.data.shapes import ShapesWorld
from ofa.errors import InputError
from ofa.evaluate import score_predictions
from ofa.preprocess import ImageTransform
from ofa.pretrained import resolve
from ofa.serve.endpoints import SPECS
from ofa.tasks import TASKS, Task, get_task
from ofa.tasks.imagine import png_base64
from ofa.train.trainer import PRIMARY_METRICS

# records of each task with data records, each with a prediction that is exactly right
# (two captions: CIDEr weighs words by how few references use them)
PERFECT = {
    "caption": [({"image": "x.png", "caption": "a red circle", "captions": ["a red circle"]},
                 "a red circle"),
                ({"image": "y.png", "caption": "two blue squares",
                  "captions": ["two blue squares"]}, "two blue squares")],
    "vqa": [({"image": "x.png", "question": "what color?", "answers": ["red"] * 10}, "red")],
    "ground": [({"image": "x.png", "text": "the circle", "box": [0, 0, 10, 10]},
                [0, 0, 10, 10])],
    "entail": [({"image": "x.png", "hypothesis": "a circle", "label": "entailment"},
                "entailment")],
    "classify": [({"image": "x.png", "label": "circle"}, "circle")],
    "summarize": [({"source": "police arrested five people", "summary": "five arrested"},
                   "five arrested")],
    "ocr": [({"image": "x.png", "text": "北京欢迎你"}, "北京 欢迎你")],
    "glue": [({"dataset": "mrpc", "text": "he left", "text2": "he went away", "label": "1"},
              "yes")],
    # a drawing: the scene its caption describes, as the best image (base64 PNG)
    "imagine": [({"text": s.caption()}, [png_base64(s.render())])
                for s in (ShapesWorld(seed=0).scene("test", i) for i in range(2))],
}


def _subcommands() -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_names_are_one_per_task_and_every_entry_is_complete():
    assert list(TASKS) == ["caption", "vqa", "ground", "entail", "classify", "summarize",
                           "generate", "imagine", "ocr", "glue"]
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name
        assert task.summary and task.result_key and task.kind in ("generate", "score", "draw")
        assert resolve(task.default_model).name == task.default_model
        if task.preprocess is not None:
            assert ImageTransform.from_cfg(task.preprocess).size == task.image_size
    assert get_task("vqa") is TASKS["vqa"]
    with pytest.raises(InputError, match="unknown task 'refcoco'; choose one of caption"):
        get_task("refcoco")


def test_every_task_has_a_command_and_an_endpoint():
    assert set(TASKS) <= _subcommands()
    assert list(SPECS) == list(TASKS)
    assert all(SPECS[name].summary == task.summary for name, task in TASKS.items())


def test_tasks_with_records_have_fields_and_a_scored_primary_metric():
    assert TASK_NAMES == tuple(n for n, t in TASKS.items() if t.record_fields)
    assert PERFECT.keys() == REQUIRED_FIELDS.keys()
    for name, pairs in PERFECT.items():
        records = [{"task": name, "id": str(i), **r} for i, (r, _) in enumerate(pairs)]
        assert all(set(REQUIRED_FIELDS[name]) <= set(r) for r in records)
        metrics = score_predictions(records, [{"prediction": p} for _, p in pairs])
        primary = f"{name}/{TASKS[name].primary_metric}"
        # the metric the table names is the one evaluation computes, and keep-best averages
        assert primary in metrics and primary in PRIMARY_METRICS
        assert metrics[primary] > 0


def test_one_line_shows_each_answer():
    shown = {name: TASKS[name].one_line(result) for name, result in {
        "caption": {"caption": "a dog"}, "vqa": {"answer": "red"},
        "ground": {"box": [1, 2, 3.5, 4]}, "entail": {"answer": "yes", "label": "entailment"},
        "classify": {"topk": [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.1}]},
        "summarize": {"summary": "s"},
        "generate": {"text": "t"}}.items()}
    assert shown == {"caption": "a dog", "vqa": "red", "ground": "1.00 2.00 3.50 4.00",
                     "entail": "yes (entailment)", "classify": "cat (0.900), dog (0.100)",
                     "summarize": "s", "generate": "t"}
    assert TASKS["ground"].one_line({"box": None}) == "none"
