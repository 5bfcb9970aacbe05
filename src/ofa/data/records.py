"""The training/evaluation record format: what a record holds, and reading and checking
``.jsonl`` files of them.

One record is one example of one task, a JSON object per line in a ``.jsonl`` file:

=========  ================================================================================
task       required fields (besides ``"task"``; every record may have ``"id"``, ``"weight"``)
=========  ================================================================================
caption    ``image``, ``caption`` (a string, or a list of reference strings)
vqa        ``image``, ``question``, ``answers`` (``{answer: confidence}``) or ``answer``;
           optional ``objects`` (list of detected object tags)
ground     ``image``, ``text``, ``box`` (``[x0, y0, x1, y1]`` in original-image pixels)
entail     ``image``, ``hypothesis``, ``label`` (entailment / contradiction / neutral);
           optional ``premise``
classify   ``image``, ``label``
summarize  ``source``, ``summary``
imagine    ``text`` (the caption); ``codes`` (the image's VQGAN codes, row by row) to train on
=========  ================================================================================

``image`` is a path, relative to the ``.jsonl`` file's folder or absolute (readers of the
official TSV files put decoded images there instead). The fields each task needs come from the
task table (:mod:`ofa.tasks`); :mod:`ofa.train.featurize` turns records into model inputs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..tasks import TASKS

# the tasks that have data records (training, evaluation), and the fields those must hold
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    name: task.record_fields for name, task in TASKS.items() if task.record_fields}
TASK_NAMES = tuple(REQUIRED_FIELDS)


def validate_record(record: Any, where: str) -> dict:
    """Check one record's fields and types; raise one InputError naming ``where``."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: a record must be a JSON object")
    task = record.get("task")
    if task not in REQUIRED_FIELDS:
        raise InputError(f"{where}: 'task' must be one of {list(TASK_NAMES)}, got {task!r}")
    missing = [f for f in REQUIRED_FIELDS[task] if record.get(f) in (None, "")]
    if missing:
        raise InputError(f"{where}: {task} record lacks {', '.join(missing)}")
    weight = record.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
            math.isfinite(weight) and weight >= 0):
        raise InputError(f"{where}: weight must be a non-negative number, got {weight!r}")
    try:
        TASKS[task].check_record(record)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return record


def read_jsonl(path: str | os.PathLike[str], tasks: Sequence[str] | None = None) -> list[dict]:
    """All valid records of a ``.jsonl`` file (optionally only some tasks), with image paths
    made absolute. Any malformed line is an error naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"dataset file not found: {p}")
    if tasks is not None:
        unknown = sorted(set(tasks) - set(TASK_NAMES))
        if unknown:
            raise InputError(f"unknown tasks {unknown}; choose from {list(TASK_NAMES)}")
    records = []
    folder, stem = p.resolve().parent, p.stem
    absolute: dict[str, str] = {}  # many records share an image: join each path once
    for n, where, record in iter_jsonl(p):
        validate_record(record, where)
        if tasks is not None and record["task"] not in tasks:
            continue
        image = record.get("image")
        if isinstance(image, str):
            if image not in absolute:
                absolute[image] = str(folder / image)
            record["image"] = absolute[image]
        if "id" not in record:
            record["id"] = f"{stem}-{n}"
        records.append(record)
    return records


def iter_jsonl(path: Path) -> Iterator[tuple[int, str, Any]]:
    """``(line number, "file:line", parsed value)`` for every non-blank line of a JSONL file;
    a line that is not JSON is an InputError naming it."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                yield n, where, json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e.msg})") from None
