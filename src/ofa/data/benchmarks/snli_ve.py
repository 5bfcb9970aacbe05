"""SNLI-VE (visual entailment) in its released JSONL form (necla-ml/SNLI-VE).

``snli_ve_{train,dev,test}.jsonl`` hold one SNLI pair per line, with the Flickr30k image the
premise caption describes: ``{"Flickr30K_ID": "3416050480", "sentence1": premise,
"sentence2": hypothesis, "gold_label": "entailment" | "neutral" | "contradiction",
"pairID": "3416050480.jpg#4r1n", ...}``. Images are ``<images>/<Flickr30K_ID>.jpg``
(the ``flickr30k-images`` folder of Flickr30k).

Records: ``{"task": "entail", "id": pairID, "image_id": Flickr30K_ID, "image", "premise",
"hypothesis", "label"}``. SNLI marks pairs without a majority label ``"-"``; SNLI-VE drops
them, and any left are skipped (and counted) rather than scored against no label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..records import iter_jsonl
from .common import place_images, require_file

__all__ = ["SNLI_VE_FIELDS", "find_snli_ve_file", "is_snli_ve_line", "read_snli_ve"]

SNLI_VE_FIELDS = ("Flickr30K_ID", "sentence1", "sentence2", "gold_label")
LABELS = ("entailment", "neutral", "contradiction")
_SPLIT_NAMES = {"val": "dev", "valid": "dev"}


def is_snli_ve_line(obj: Any) -> bool:
    """Whether a parsed JSONL line looks like SNLI-VE (rather than our own records)."""
    return isinstance(obj, dict) and "Flickr30K_ID" in obj and "sentence2" in obj


def find_snli_ve_file(folder: str | os.PathLike[str], split: str | None = None) -> Path:
    """``snli_ve_<split>.jsonl`` in ``folder`` (split: train, dev/val, test; default test)."""
    f = Path(folder)
    name = _SPLIT_NAMES.get(split or "test", split or "test")
    path = f / f"snli_ve_{name}.jsonl"
    if not path.is_file():
        found = sorted(p.name for p in f.glob("snli_ve_*.jsonl"))
        raise InputError(f"{f}: no snli_ve_{name}.jsonl"
                         + (f" (found {', '.join(found)})" if found else
                            "; expected the SNLI-VE files snli_ve_{train,dev,test}.jsonl"))
    return path


def read_snli_ve(path: str | os.PathLike[str], images: str | os.PathLike[str] | None = None
                 ) -> tuple[list[dict], int]:
    """Entailment records of an SNLI-VE JSONL file, and how many unlabelled ("-") pairs were
    skipped. ``images`` is the Flickr30k image folder (default: searched near the file,
    including ``flickr30k-images/``)."""
    p = require_file(path, "SNLI-VE file")
    records, skipped = [], 0
    for n, where, item in iter_jsonl(p):
        missing = [k for k in SNLI_VE_FIELDS
                   if not isinstance(item, dict) or not str(item.get(k, "")).strip()]
        if missing:
            raise InputError(f"{where}: an SNLI-VE line needs {', '.join(missing)}")
        label = str(item["gold_label"]).strip().lower()
        if label == "-":
            skipped += 1
            continue
        if label not in LABELS:
            raise InputError(f"{where}: gold_label {item['gold_label']!r} is not one of "
                             f"{list(LABELS)}")
        image_id = str(item["Flickr30K_ID"]).strip()
        name = image_id if image_id.lower().endswith(".jpg") else f"{image_id}.jpg"
        records.append({"task": "entail", "id": str(item.get("pairID") or f"{p.stem}-{n}"),
                        "image_id": image_id, "image": name,
                        "premise": str(item["sentence1"]).strip(),
                        "hypothesis": str(item["sentence2"]).strip(), "label": label})
    folder = p.resolve().parent
    place_images(records, images, [folder, folder.parent],
                 ("flickr30k-images", "flickr30k_images", "images",
                  "Flickr30K/flickr30k_images"), str(p))
    return records, skipped
