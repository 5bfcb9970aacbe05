"""OFA's text-to-image evaluation set: the captions of ``coco_vqgan_*.tsv``.

OFA's ``coco_image_gen.zip`` (datasets.md, "Dataset for Text-to-Image Generation") holds
``coco_vqgan_train.tsv``, ``coco_vqgan_dev.tsv`` and ``coco_vqgan_full_test.tsv``. The README
("Text-to-Image Generation") gives their columns: a unique id, the image's VQGAN codes (the
1024 code indices of the 256 x 256 image, separated by single spaces) and the lowercased
caption, tab-separated. The official scripts read them with ``selected_cols=0,2,1``
(``run_scripts/image_gen/evaluate_image_gen.sh``, ``train_image_gen_stage1_distributed.sh``),
and ``data/mm_data/image_gen_dataset.py`` unpacks that as ``uniq_id, text, image_code``; the
same dataset also takes rows of just ``uniq_id, text`` (no codes), which this reader accepts
too. The codes are the training targets; evaluation only needs the captions (the FID reference
is the original images: see :mod:`ofa.imagegen.evaluate`).

Records: ``{"task": "imagine", "id": uniq_id, "text": caption}`` (plus ``"codes"``, the list of
ints, with ``codes=True``). Also read: a ``.txt`` file of one caption per line (ids
``<file stem>-<line number>``) and ``.jsonl`` lines ``{"id"?, "text"}`` (or ``"caption"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..records import iter_jsonl
from ..tsv import is_image_codes, parse_image_codes
from .common import check_file_split, require_file
from .sets import EvalData

__all__ = ["IMAGINE_TASKS", "find_imagegen_file", "read_imagegen", "read_imagegen_tsv"]

# task names read_eval_data sends here: ours, and the official --task name
IMAGINE_TASKS = ("imagine", "image_gen", "text-to-image", "text2image")
_SPLIT_NAMES = {"test": ("full_test", "test"), "val": ("dev", "val"), "valid": ("dev", "val"),
                "dev": ("dev", "val")}
_UTF8_BOM = "\ufeff"


def find_imagegen_file(folder: str | os.PathLike[str], split: str | None = None) -> Path:
    """``coco_vqgan_<split>.tsv`` in ``folder`` (split default test: ``full_test``; val or
    dev: ``dev``)."""
    f = Path(folder)
    split = split or "test"
    names = [f"coco_vqgan_{s}.tsv" for s in _SPLIT_NAMES.get(split, (split,))]
    for name in names:
        if (f / name).is_file():
            return f / name
    found = sorted(p.name for p in f.glob("coco_vqgan_*.tsv"))
    raise InputError(f"{f}: no {' or '.join(names)}"
                     + (f" (found {', '.join(found)})" if found else
                        "; expected OFA's coco_vqgan_{train,dev,full_test}.tsv"))


def _tsv_row(cols: list[str], where: str, default_id: str, codes: bool) -> dict:
    if len(cols) == 3:
        uniq_id, code_text, caption = cols
        if not is_image_codes(code_text):
            hint = (" (its third column holds the codes: columns are uniq_id, image codes, "
                    "caption)" if is_image_codes(caption) else "")
            raise InputError(f"{where}: column 2 must hold the image's VQGAN codes (integers "
                             f"separated by spaces){hint}")
    elif len(cols) == 2:
        uniq_id, caption = cols
        code_text = ""
        if codes:
            raise InputError(f"{where}: no image codes (2 columns: uniq_id, caption)")
    else:
        raise InputError(f"{where}: found {len(cols)} tab-separated columns; a text-to-image "
                         "file has 3 (uniq_id, image codes, caption) or 2 (uniq_id, caption)")
    caption = caption.strip()
    if not caption:
        raise InputError(f"{where}: the caption column is empty")
    record: dict[str, Any] = {"task": "imagine", "id": uniq_id.strip() or default_id,
                              "text": caption}
    if codes:
        record["codes"] = parse_image_codes(code_text)
    return record


def read_imagegen_tsv(path: str | os.PathLike[str], *, codes: bool = False) -> list[dict]:
    """Text-to-image records of an official ``coco_vqgan_*.tsv`` file (module docstring),
    in file order; every line is checked, and a repeated id is an error."""
    p = require_file(path, "text-to-image TSV file")
    records: list[dict] = []
    try:
        with p.open(encoding="utf-8", newline="") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if n == 1:
                    line = line.removeprefix(_UTF8_BOM)
                if not line.strip():
                    continue
                records.append(_tsv_row(line.split("\t"), f"{p}:{n}", f"{p.stem}-{n}", codes))
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text (byte {e.start} of a line)") from None
    except OSError as e:
        raise InputError(f"cannot read {p}: {e}") from None
    _unique(records, p)
    return records


def _read_txt(p: Path) -> list[dict]:
    try:
        lines = p.read_text(encoding="utf-8").removeprefix(_UTF8_BOM).splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"cannot read {p}: {e}") from None
    return [{"task": "imagine", "id": f"{p.stem}-{n}", "text": line.strip()}
            for n, line in enumerate(lines, 1) if line.strip()]


def _read_jsonl(p: Path) -> list[dict]:
    records = []
    for n, where, item in iter_jsonl(p):
        text = item.get("text", item.get("caption")) if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: a text-to-image line needs a non-empty \"text\"")
        if item.get("task", "imagine") not in IMAGINE_TASKS:
            raise InputError(f"{where}: task {item.get('task')!r} is not text-to-image")
        rid = item.get("id")
        records.append({"task": "imagine", "id": f"{p.stem}-{n}" if rid in (None, "")
                        else str(rid), "text": text.strip()})
    return records


def _unique(records: list[dict], p: Path) -> None:
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise InputError(f"{p}: id {r['id']!r} appears twice; evaluation keys on ids")
        seen.add(r["id"])


def read_imagegen(data: str | os.PathLike[str], *, split: str | None = None,
                  images: str | os.PathLike[str] | None = None,
                  annotations: str | os.PathLike[str] | None = None,
                  class_names: str | os.PathLike[str] | None = None) -> EvalData:
    """The text-to-image records at ``data`` (a ``.tsv``, ``.txt`` or ``.jsonl`` file, or a
    folder holding ``coco_vqgan_<split>.tsv``), for :func:`ofa.data.benchmarks.read_eval_data`.

    ``images`` is the folder of reference images FID compares with (the original COCO
    images); it is checked and passed on as ``meta["reference_images"]``, nothing is read from
    it here.
    """
    p = Path(data)
    if not p.exists():
        raise InputError(f"evaluation data not found: {p}")
    if annotations is not None or class_names is not None:
        raise InputError("text-to-image data takes no annotations or class-names file")
    if images is not None and not Path(images).is_dir():
        raise InputError(f"reference image folder not found: {images}")
    if p.is_dir():
        p = find_imagegen_file(p, split)
    else:
        check_file_split(p, split)
    suffix = p.suffix.lower()
    if suffix == ".tsv":
        records, fmt = read_imagegen_tsv(p), "coco-vqgan-tsv"
    elif suffix == ".txt":
        records, fmt = _read_txt(p), "captions-txt"
    elif suffix == ".jsonl":
        records, fmt = _read_jsonl(p), "jsonl"
    else:
        raise InputError(f"{p}: cannot tell the text-to-image data format; expected OFA's "
                         "coco_vqgan_<split>.tsv, a .txt file of captions or .jsonl records")
    _unique(records, p)
    if not records:
        raise InputError(f"{p}: no captions")
    meta = {"split": split, "file": str(p),
            "reference_images": None if images is None else str(images)}
    return EvalData(records, fmt, meta=meta)
