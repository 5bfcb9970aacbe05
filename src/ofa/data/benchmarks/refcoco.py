"""RefCOCO, RefCOCO+ and RefCOCOg in the layout of the ``refer`` toolkit (lichengunc/refer).

A dataset folder (``refcoco/``, ``refcoco+/``, ``refcocog/``) holds ``instances.json`` (COCO
format: ``images`` with ``file_name``, ``annotations`` with ``id`` and ``bbox`` as
``[x, y, w, h]``) and one or more ``refs(<splitBy>).p`` pickles: a list of refs, each
``{"ref_id", "ann_id", "image_id", "split", "file_name", "sentences": [{"sent", "raw",
"sent_id", ...}], ...}``. The splits are train/val/testA/testB for ``refs(unc).p`` (RefCOCO,
RefCOCO+), train/val/test for ``refs(umd).p`` (RefCOCOg) and train/val for
``refs(google).p``. A ref's ``file_name`` carries an extra ``_<ann_id>`` suffix; the image file
is the COCO one named in ``instances.json`` (``COCO_train2014_%012d.jpg``).

The pickles are read with :mod:`ofa.data.plain_pickle`, which refuses anything but plain data.
Every sentence of every ref in the split is one grounding record.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..plain_pickle import load_plain_pickle
from .coco import coco_subdir
from .common import list_field, load_json, place_images, require_file

__all__ = ["REFER_DATASETS", "SPLIT_BY_PREFERENCE", "find_refer_folder", "find_refs_file",
           "read_refer"]

REFER_DATASETS = ("refcoco", "refcoco+", "refcocog")
# When a folder holds several refs files: RefCOCO/RefCOCO+ are evaluated on the UNC splits
# (val/testA/testB) and RefCOCOg on the UMD ones (val/test), as in the OFA paper.
SPLIT_BY_PREFERENCE = ("unc", "umd", "google")
_REFS_NAME = re.compile(r"^refs\((\w+)\)\.p$")


def _refs_files(folder: Path) -> dict[str, Path]:
    found = {}
    for p in sorted(folder.iterdir()):
        m = _REFS_NAME.match(p.name)
        if m and p.is_file():
            found[m.group(1)] = p
    return found


def find_refer_folder(data: str | os.PathLike[str], dataset: str | None = None) -> Path:
    """The dataset folder holding ``refs(...).p``: ``data`` itself, or its ``dataset``
    subfolder (``refcoco``, ``refcoco+``, ``refcocog``) when ``data`` is the ``refer`` data
    root."""
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"refer dataset folder not found: {root}")
    if _refs_files(root):
        return root
    subs = [d for d in REFER_DATASETS if (root / d).is_dir() and _refs_files(root / d)]
    if dataset is not None:
        if dataset in subs:
            return root / dataset
        raise InputError(f"{root}: no {dataset}/ folder with refs(...).p files"
                         + (f"; found {', '.join(subs)}" if subs else ""))
    if len(subs) == 1:
        return root / subs[0]
    if subs:
        raise InputError(f"{root} holds several datasets ({', '.join(subs)}); name one as the "
                         "task (refcoco, refcoco+, refcocog) or pass its folder")
    raise InputError(f"{root}: no refs(unc).p / refs(umd).p / refs(google).p file; expected the "
                     "refer layout (refcoco/refs(unc).p + refcoco/instances.json)")


def find_refs_file(folder: str | os.PathLike[str], split_by: str | None = None) -> Path:
    """``refs(<split_by>).p`` in ``folder``; without ``split_by``, the preferred one there."""
    f = Path(folder)
    found = _refs_files(f)
    if split_by is not None:
        if split_by not in found:
            raise InputError(f"{f}: no refs({split_by}).p; found "
                             f"{', '.join(p.name for p in found.values()) or 'none'}")
        return found[split_by]
    for name in SPLIT_BY_PREFERENCE:
        if name in found:
            return found[name]
    if found:
        return next(iter(found.values()))
    raise InputError(f"{f}: no refs(...).p file (the refer layout has refs(unc).p, "
                     "refs(umd).p or refs(google).p next to instances.json)")


def _instances(path: Path) -> tuple[dict[int, list], dict[int, str]]:
    """Boxes by annotation id and file names by image id, from ``instances.json``."""
    data = load_json(path, "refer instances file")
    anns = list_field(data, "annotations",
                      f"{path}: not a COCO instances file (expected \"annotations\")")
    boxes = {}
    for a in anns:
        if isinstance(a, dict) and "id" in a and isinstance(a.get("bbox"), list):
            boxes[a["id"]] = a["bbox"]
    names = {i["id"]: i["file_name"] for i in data.get("images") or []
             if isinstance(i, dict) and "id" in i and isinstance(i.get("file_name"), str)}
    return boxes, names


def _xyxy(bbox: list, where: str) -> list[float]:
    if len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                 for v in bbox):
        raise InputError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise InputError(f"{where}: bbox {bbox!r} has a negative width or height")
    return [x, y, x + w, y + h]


def _coco_train_name(image_id: Any, where: str) -> str:
    # refer's IMAGE_DIR is COCO train2014, where every RefCOCO image comes from.
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise InputError(f"{where}: image_id {image_id!r} is not in instances.json")
    return f"COCO_train2014_{image_id:012d}.jpg"


def _check_ref(ref: Any, n: int, path: Path) -> dict:
    keys = ("ref_id", "ann_id", "image_id", "split", "sentences")
    if not isinstance(ref, dict) or any(k not in ref for k in keys) \
            or not isinstance(ref["sentences"], list):
        raise InputError(f"{path}: ref {n} is not a refer ref (needs {', '.join(keys)})")
    return ref


def read_refer(data: str | os.PathLike[str], split: str = "val",
               images: str | os.PathLike[str] | None = None, *, split_by: str | None = None,
               instances: str | os.PathLike[str] | None = None,
               dataset: str | None = None) -> list[dict]:
    """Grounding records of one split of a ``refer`` dataset.

    ``data`` is the dataset folder, the ``refer`` data root (with ``dataset`` naming the
    subfolder) or a ``refs(...).p`` file; ``split_by`` picks among several refs files (default:
    unc, then umd, then google). ``instances`` overrides ``<folder>/instances.json``.
    ``images`` is the COCO ``train2014`` folder or one above it (default: searched near the
    data, including refer's own ``images/mscoco/images/train2014``).

    Records: ``{"task": "ground", "id": "<ref_id>-<sent_id>", "image_id", "ref_id",
    "image", "text": sentence, "box": [x0, y0, x1, y1]}`` in pixels of the original image.
    """
    p = Path(data)
    if p.is_file():
        refs_path = p
        if _REFS_NAME.match(p.name) is None and p.suffix not in (".p", ".pkl", ".pickle"):
            raise InputError(f"{p}: expected a refs(<splitBy>).p pickle or a refer folder")
        folder = p.parent
    else:
        folder = find_refer_folder(p, dataset)
        refs_path = find_refs_file(folder, split_by)
    inst_path = require_file(instances if instances is not None else folder / "instances.json",
                             "refer instances file")
    refs = load_plain_pickle(refs_path)
    if not isinstance(refs, list):
        raise InputError(f"{refs_path}: expected a list of refs, got {type(refs).__name__}")
    refs = [_check_ref(r, n, refs_path) for n, r in enumerate(refs)]
    splits = sorted({str(r["split"]) for r in refs})
    if split not in splits:
        raise InputError(f"{refs_path}: unknown split {split!r}; this file has {splits}")
    boxes, names = _instances(inst_path)
    records = []
    for ref in refs:
        if ref["split"] != split:
            continue
        where = f"{refs_path}: ref {ref['ref_id']}"
        if ref["ann_id"] not in boxes:
            raise InputError(f"{where}: annotation {ref['ann_id']} is not in {inst_path}")
        box = _xyxy(boxes[ref["ann_id"]], f"{inst_path}: annotation {ref['ann_id']}")
        image = names.get(ref["image_id"]) or _coco_train_name(ref["image_id"], where)
        for k, sent in enumerate(ref["sentences"]):
            text = (sent.get("sent") or sent.get("raw") or "").strip() \
                if isinstance(sent, dict) else ""
            if not text:
                raise InputError(f"{where}: sentence {k} has no text")
            records.append({"task": "ground", "id": f"{ref['ref_id']}-{sent.get('sent_id', k)}",
                            "image_id": ref["image_id"], "ref_id": ref["ref_id"],
                            "image": image, "text": text, "box": list(box)})
    sub = coco_subdir(records[0]["image"]) if records else None
    subdirs = (sub, f"images/{sub}", f"images/mscoco/images/{sub}") if sub else ()
    place_images(records, images, [folder.resolve(), folder.resolve().parent], subdirs,
                 str(refs_path))
    return records
