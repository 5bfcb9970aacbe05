"""Readers for OFA's pretraining TSV files (``pretrain_data_examples.zip``), lazily per row.

The official pretraining reads four kinds of file (OFA-Sys/OFA
``run_scripts/pretraining/pretrain_ofa_base.sh``, ``data/pretrain_data/unify_dataset.py``):

=============  ================================================================  ===========
kind           columns (the script's ``selected_cols``)                          records
=============  ================================================================  ===========
``pairs``      uniq_id, image, caption, question, refs, gt_objects,              ``caption``,
               dataset_name, type (0-7; type is caption / qa /                   ``qa``,
               visual_grounding)                                                 ``grounding``
``text``       uniq_id, text (0,1)                                               ``text``
``image``      image_id, image (256 x 256), code (0,1,2): the VQGAN codes of     ``image``
               the image's centre, separated by spaces
``detection``  image_id, image, label (0,1,2): ``x0,y0,x1,y1,cat_id,name``       ``detection``
               per object, joined by ``&&``
=============  ================================================================  ===========

Images are base64 (standard or URL-safe); ``refs`` is ``conf|!+answer&&...`` for qa rows and
``x0,y0,x1,y1`` for visual grounding; ``gt_objects`` are object names joined by ``&&``.
Each record carries ``"pretrain"`` (its kind, last column above) instead of ``"task"``:
:mod:`ofa.train.pretrain` turns it into the official samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from .tsv import (
    LazyRecords,
    TSVFile,
    decode_base64_bytes,
    parse_box,
    parse_image_codes,
    parse_vqa_answers,
)

__all__ = ["PRETRAIN_FILES", "PretrainRecords", "read_pretrain_tsv"]

# kind -> (number of columns, official selected_cols)
PRETRAIN_FILES: dict[str, tuple[int, tuple[int, ...]]] = {
    "pairs": (8, (0, 1, 2, 3, 4, 5, 6, 7)),
    "text": (2, (0, 1)),
    "image": (3, (0, 1, 2)),
    "detection": (3, (0, 1, 2)),
}
PAIR_TYPES = {"caption": "caption", "qa": "qa", "visual_grounding": "grounding"}


def _objects(text: str) -> list[str]:
    return [o.strip() for o in text.split("&&") if o.strip()]


def _pair(cols: list[str]) -> dict[str, Any]:
    uniq_id, image, caption, question, refs, gt_objects, dataset, kind = cols
    kind = kind.strip()
    if kind not in PAIR_TYPES:
        raise InputError(f"type {kind!r} must be one of {', '.join(PAIR_TYPES)}")
    record: dict[str, Any] = {"pretrain": PAIR_TYPES[kind], "id": uniq_id.strip(),
                              "image": decode_base64_bytes(image), "dataset": dataset.strip()}
    if kind == "qa":
        if not question.strip():
            raise InputError("a qa row needs its question (column 3)")
        record.update(question=question.strip(), answers=parse_vqa_answers(refs))
    elif not caption.strip():
        raise InputError(f"a {kind} row needs its caption (column 2)")
    elif kind == "caption":
        record.update(caption=caption.strip(), objects=_objects(gt_objects))
    else:
        record.update(text=caption.strip(), box=parse_box(refs))
    return record


def _detection_objects(label: str) -> list[dict[str, Any]]:
    objects = []
    for item in label.split("&&"):
        parts = item.strip().split(",", 5)
        if len(parts) != 6 or not parts[5].strip():
            raise InputError(f"detection label {item.strip()!r} must be x0,y0,x1,y1,cat_id,name")
        objects.append({"box": parse_box(",".join(parts[:4])), "label": parts[5].strip()})
    return objects


def _parse(kind: str, cols: list[str]) -> dict[str, Any]:
    if kind == "pairs":
        return _pair(cols)
    if kind == "text":
        if not cols[1].strip():
            raise InputError("the text column is empty")
        return {"pretrain": "text", "id": cols[0].strip(), "text": cols[1]}
    if kind == "image":
        return {"pretrain": "image", "id": cols[0].strip(),
                "image": decode_base64_bytes(cols[1]), "codes": parse_image_codes(cols[2])}
    return {"pretrain": "detection", "id": cols[0].strip(),
            "image": decode_base64_bytes(cols[1]), "objects": _detection_objects(cols[2])}


class PretrainRecords(LazyRecords):
    """The records of one pretraining TSV file; each row is parsed when it is read."""

    def __init__(self, file: TSVFile, kind: str) -> None:
        self.file, self.kind = file, kind

    def __len__(self) -> int:
        return len(self.file)

    def __repr__(self) -> str:
        return f"PretrainRecords({str(self.file.path)!r}, kind={self.kind!r}, rows={len(self)})"

    def record(self, i: int) -> dict:
        where = f"{self.file.path}:{self.file.line_number(i)}"
        cols = self.file[i]
        columns = PRETRAIN_FILES[self.kind][0]
        if len(cols) != columns:
            raise InputError(f"{where}: a {self.kind} row needs {columns} selected columns, "
                             f"got {len(cols)}")
        try:
            return _parse(self.kind, cols)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None


def read_pretrain_tsv(path: str | os.PathLike[str], kind: str,
                      selected_cols: Sequence[int] | str | None = None) -> PretrainRecords:
    """The records of an official pretraining TSV of ``kind`` (pairs, text, image or
    detection; module docstring), with the official columns unless ``selected_cols``."""
    if kind not in PRETRAIN_FILES:
        raise InputError(f"{path}: unknown pretraining file kind {kind!r}; choose one of "
                         f"{', '.join(PRETRAIN_FILES)}")
    columns, default = PRETRAIN_FILES[kind]
    if selected_cols is None:
        return PretrainRecords(TSVFile(path, default, num_columns=columns), kind)
    return PretrainRecords(TSVFile(path, selected_cols), kind)
