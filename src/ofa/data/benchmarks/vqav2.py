"""VQAv2 as distributed by visualqa.org: a questions file plus, except for the test splits, an
annotations file; and the answer file the evaluation server takes.

- Questions: ``v2_OpenEnded_mscoco_<subtype>_questions.json`` with ``{"data_subtype":
  "val2014", "questions": [{"image_id", "question", "question_id"}]}``; subtypes train2014,
  val2014, test-dev2015, test2015.
- Annotations: ``v2_mscoco_<subtype>_annotations.json`` with ``{"annotations":
  [{"question_id", "image_id", "answers": [{"answer", "answer_confidence", "answer_id"}] (10
  human answers), "multiple_choice_answer", "answer_type", "question_type"}]}``.
- Images: ``COCO_<subtype>_%012d.jpg`` in the ``<subtype>`` folder; test-dev questions are on
  test2015 images.
- Results for the server: ``[{"question_id": int, "answer": str}, ...]`` for every question.

Records: ``{"task": "vqa", "id": str(question_id), "question_id", "image_id", "image",
"question"}`` plus, with annotations, ``"human_answers"`` (the 10 raw answers, for the
official accuracy), ``"answers"`` ({answer: score}, see :func:`answer_scores`) and
``"answer_type"`` (yes/no, number, other).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError
from .common import list_field, load_json, place_images

__all__ = ["VQA_SPLITS", "answer_scores", "find_vqa_annotations", "find_vqa_questions",
           "image_subtype", "read_vqav2", "vqa_submission", "write_vqa_submission"]

# Split names people type -> the data_subtype in the file names.
VQA_SPLITS = {"train": "train2014", "val": "val2014", "test-dev": "test-dev2015",
              "test": "test2015", "test-std": "test2015"}
_SUBTYPE = re.compile(r"(train|val|test-dev|test)(\d{4})")


def image_subtype(subtype: str) -> str:
    """The image folder of a question subtype: ``test-dev2015`` -> ``test2015``."""
    return subtype.replace("test-dev", "test")


def answer_scores(human_answers: Sequence[str]) -> dict[str, float]:
    """``{answer: score}`` for the distinct human answers, most agreed first.

    The score is the official VQA accuracy of predicting that exact answer: over the 10 ways to
    leave one annotator out, min(1, matches among the other 9 / 3), averaged (so 1, 2, 3, 4+
    matches give 0.3, 0.6, 0.9, 1.0). The official metric also normalises punctuation, number
    words and articles; that is applied by the evaluator on ``human_answers``, not here.
    """
    answers = [a.strip() for a in human_answers]
    n = len(answers)
    counts: dict[str, int] = {}
    for a in answers:
        if a:
            counts[a] = counts.get(a, 0) + 1
    scores = {}
    for a, c in counts.items():
        if n < 2:
            score = min(1.0, c / 3)
        else:  # c annotators see c-1 matches among the others, n-c annotators see c
            score = (c * min(1.0, (c - 1) / 3) + (n - c) * min(1.0, c / 3)) / n
        scores[a] = round(score, 6)
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def find_vqa_annotations(questions: str | os.PathLike[str]) -> Path | None:
    """The annotations file of a questions file, by the official names, in its folder or a
    sibling ``Annotations``/``annotations`` folder (None when there is none)."""
    q = Path(questions)
    name = q.name.replace("_questions", "_annotations")
    names = [name.replace("OpenEnded_", "").replace("MultipleChoice_", ""), name]
    folders = [q.parent, q.parent.parent / "Annotations", q.parent.parent / "annotations"]
    for folder in folders:
        for candidate in names:
            if candidate != q.name and (folder / candidate).is_file():
                return folder / candidate
    return None


def find_vqa_questions(folder: str | os.PathLike[str], split: str | None = None) -> Path:
    """The questions file of ``split`` (val, test-dev, test, train or a subtype such as
    val2014) in ``folder``; without a split, the only questions file there."""
    f = Path(folder)
    files = sorted(p for p in f.glob("*_questions.json") if p.is_file())
    if not files:
        raise InputError(f"{f}: no VQA questions file (*_questions.json) in this folder")
    if split is None:
        if len(files) == 1:
            return files[0]
        raise InputError(f"{f} holds several questions files ({', '.join(p.name for p in files)}"
                         "); choose one with the split (val, test-dev, test)")
    subtype = VQA_SPLITS.get(split, split)
    hits = [p for p in files if f"_{subtype}_" in p.name]
    if not hits:
        raise InputError(f"{f}: no questions file for split {split!r} ({subtype}); found "
                         f"{', '.join(p.name for p in files)}")
    return hits[0]


def _subtype(data: dict, path: Path) -> str:
    subtype = data.get("data_subtype")
    if isinstance(subtype, str) and subtype:
        return subtype
    m = _SUBTYPE.search(path.name)
    if m:
        return m.group(0)
    raise InputError(f"{path}: no data_subtype (e.g. val2014) in the file or its name, so the "
                     "image names are unknown")


def _int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: {what} must be an integer, got {value!r}")
    return value


def _annotations(path: Path, subtype: str) -> dict[int, dict]:
    data = load_json(path, "VQA annotations file")
    anns = list_field(data, "annotations", f"{path}: not a VQA annotations file (expected "
                      "{\"annotations\": [{\"question_id\", \"answers\", ...}]})")
    other = data.get("data_subtype")
    if isinstance(other, str) and other and other != subtype:
        raise InputError(f"{path} annotates {other}, but the questions are {subtype}")
    out = {}
    for n, a in enumerate(anns):
        where = f"{path}: annotation {n}"
        if not isinstance(a, dict) or not isinstance(a.get("answers"), list):
            raise InputError(f"{where}: needs question_id and an answers list")
        answers = [x.get("answer") if isinstance(x, dict) else None for x in a["answers"]]
        if not answers or not all(isinstance(x, str) for x in answers):
            raise InputError(f"{where}: every answer needs an 'answer' string")
        out[_int(a.get("question_id"), "question_id", where)] = {
            "image_id": a.get("image_id"), "human_answers": answers,
            "answer_type": a.get("answer_type")}
    return out


def read_vqav2(questions: str | os.PathLike[str],
               annotations: str | os.PathLike[str] | None = None,
               images: str | os.PathLike[str] | None = None,
               find_annotations: bool = True) -> tuple[list[dict], dict[str, Any]]:
    """VQA records of a questions file, with answers from ``annotations`` (default: the file
    found next to it by :func:`find_vqa_annotations`, unless ``find_annotations`` is off).

    ``images`` is the folder of the COCO images or the one holding ``val2014/`` /
    ``test2015/`` (default: searched near the questions). Returns the records and
    ``{"subtype", "image_subtype", "annotations"}`` (the annotations path used, or None).
    """
    q = Path(questions)
    data = load_json(q, "VQA questions file")
    qs = list_field(data, "questions", f"{q}: not a VQA questions file (expected "
                    "{\"data_subtype\": ..., \"questions\": [{\"image_id\", \"question\", "
                    "\"question_id\"}]})")
    subtype = _subtype(data, q)
    img_sub = image_subtype(subtype)
    if annotations is None and find_annotations:
        annotations = find_vqa_annotations(q)
    anns = _annotations(Path(annotations), subtype) if annotations is not None else None
    records = []
    for n, item in enumerate(qs):
        where = f"{q}: question {n}"
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                or not item["question"].strip():
            raise InputError(f"{where}: needs a question text")
        qid = _int(item.get("question_id"), "question_id", where)
        image_id = _int(item.get("image_id"), "image_id", where)
        record: dict[str, Any] = {"task": "vqa", "id": str(qid), "question_id": qid,
                                  "image_id": image_id,
                                  "image": f"COCO_{img_sub}_{image_id:012d}.jpg",
                                  "question": item["question"].strip()}
        if anns is not None:
            ann = anns.get(qid)
            if ann is None:
                raise InputError(f"{annotations} has no answers for question {qid} of {q}; "
                                 "are they the same split?")
            if ann["image_id"] is not None and ann["image_id"] != image_id:
                raise InputError(f"{annotations}: question {qid} is on image {ann['image_id']} "
                                 f"there but on image {image_id} in {q}")
            record["answers"] = answer_scores(ann["human_answers"])
            record["human_answers"] = list(ann["human_answers"])
            if ann["answer_type"]:
                record["answer_type"] = ann["answer_type"]
        records.append(record)
    place_images(records, images, [q.resolve().parent, q.resolve().parent.parent],
                 (img_sub, f"images/{img_sub}"), str(q))
    info = {"subtype": subtype, "image_subtype": img_sub,
            "annotations": str(annotations) if annotations is not None else None}
    return records, info


# ---------------------------------------------------------------------- server answer file


def vqa_submission(records: Sequence[dict],
                   predictions: Mapping[str, str] | Sequence[dict]) -> list[dict]:
    """The evaluation server's results: ``[{"question_id": int, "answer": str}]`` in record
    order, for every VQA record. ``predictions`` maps record ids to answers, or is the list of
    ``{"id", "prediction"}`` dicts :mod:`ofa.evaluate` writes. A question without an answer is
    an error: the server refuses incomplete files."""
    if not isinstance(predictions, Mapping):
        predictions = {str(p["id"]): p.get("prediction") for p in predictions}
    rows, missing = [], []
    for r in records:
        if r.get("task", "vqa") != "vqa":
            continue
        if "question_id" not in r:
            raise InputError(f"record {r.get('id')} has no question_id (VQAv2 questions files "
                             "give one)")
        answer = predictions.get(str(r.get("id")))
        if not isinstance(answer, str):
            missing.append(str(r.get("id")))
            continue
        rows.append({"question_id": int(r["question_id"]), "answer": answer.strip()})
    if missing:
        raise InputError(f"{len(missing)} of {len(missing) + len(rows)} questions have no "
                         f"answer (first: {missing[0]}); the server needs one for each")
    return rows


def write_vqa_submission(path: str | os.PathLike[str], records: Sequence[dict],
                         predictions: Mapping[str, str] | Sequence[dict]) -> Path:
    """Write :func:`vqa_submission` as JSON to ``path`` (folders created); returns the path."""
    rows = vqa_submission(records, predictions)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rows), encoding="utf-8")
    return p
