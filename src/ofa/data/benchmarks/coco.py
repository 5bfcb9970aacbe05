"""COCO captioning evaluation sets (the Karpathy split) in the layouts people download.

- Karpathy's ``dataset_coco.json`` (also ``dataset_flickr30k.json`` / ``dataset_flickr8k.json``):
  ``{"images": [{"filepath", "filename", "split", "sentences": [{"raw", ...}], "cocoid"}]}``,
  every split in one file (``train``, ``restval``, ``val``, ``test``); images are
  ``<images>/<filepath>/<filename>``.
- The BLIP/LAVIS files mmpretrain uses: ``coco_karpathy_{train,val,test}.json``, a list of
  ``{"image": "val2014/COCO_val2014_000000184613.jpg", "caption": [...]}`` (train files hold one
  caption per entry), with the COCO-format references ``coco_karpathy_{val,test}_gt.json``
  (``{"annotations": [{"image_id", "caption", "id"}], "images": [...]}``) that its metric
  scores against; when that file is found it supplies the references.
- An official COCO captions file (``captions_val2014.json``): ``{"images": [{"id",
  "file_name"}], "annotations": [{"image_id", "caption"}]}``.

Each reader gives one caption record per image: ``{"task": "caption", "id", "image_id",
"image", "caption": [references]}``, in file order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import InputError
from .common import list_field, load_json, place_images

__all__ = ["KARPATHY_SPLITS", "coco_subdir", "find_coco_references", "read_coco_caption_list",
           "read_coco_captions", "read_coco_references", "read_karpathy"]

KARPATHY_SPLITS = ("train", "restval", "val", "test")
_COCO_NAME = re.compile(r"COCO_([a-z]+\d{4})_0*(\d+)\.\w+$")


def coco_subdir(file_name: str) -> str | None:
    """``"COCO_val2014_000000184613.jpg"`` -> ``"val2014"``, the folder COCO ships it in."""
    m = _COCO_NAME.search(file_name)
    return m.group(1) if m else None


def _refs(captions: Any, where: str) -> list[str]:
    items = [captions] if isinstance(captions, str) else captions
    if not isinstance(items, list) or not all(isinstance(c, str) for c in items):
        raise InputError(f"{where}: captions must be a string or a list of strings")
    refs = [c.strip() for c in items if c.strip()]
    if not refs:
        raise InputError(f"{where}: no reference captions")
    return refs


def _roots(path: Path) -> list[Path]:
    # Annotations usually sit in the image root or in an "annotations" folder inside it.
    folder = path.resolve().parent
    return [folder, folder.parent]


# ---------------------------------------------------------------------- Karpathy's file


def read_karpathy(path: str | os.PathLike[str], split: str = "test",
                  images: str | os.PathLike[str] | None = None) -> list[dict]:
    """The caption records of one split of Karpathy's ``dataset_*.json`` (default: test).

    ``images`` is the folder holding the ``filepath`` folders (``val2014/``, ...); by default
    the file's folder or the one above it.
    """
    p = Path(path)
    data = load_json(p, "Karpathy caption file")
    entries = list_field(data, "images", f"{p}: not Karpathy's caption file (expected "
                         "{\"images\": [...]} with filename, split and sentences per image)",
                         of_dicts=True)
    splits = sorted({str(e.get("split")) for e in entries})
    if split not in splits:
        raise InputError(f"{p}: unknown split {split!r}; this file has {splits}")
    records = []
    for n, e in enumerate(entries):
        if e.get("split") != split:
            continue
        where = f"{p}: image {n} ({e.get('filename')})"
        if not isinstance(e.get("filename"), str) or not isinstance(e.get("sentences"), list):
            raise InputError(f"{where}: needs 'filename' and a 'sentences' list")
        refs = _refs([s.get("raw", "") if isinstance(s, dict) else s for s in e["sentences"]],
                     where)
        image_id = e.get("cocoid", e.get("imgid"))
        rel = PurePosixPath(e.get("filepath") or "", e["filename"])
        record: dict[str, Any] = {"task": "caption",
                                  "id": str(image_id if image_id is not None else rel),
                                  "image": str(rel), "caption": refs}
        if image_id is not None:
            record["image_id"] = image_id
        records.append(record)
    place_images(records, images, _roots(p), ("images",), str(p))
    return records


# ---------------------------------------------------------------------- BLIP / mmpretrain


def find_coco_references(path: str | os.PathLike[str]) -> Path | None:
    """The ``<name>_gt.json`` next to ``coco_karpathy_<split>.json``, if there is one."""
    p = Path(path)
    gt = p.with_name(f"{p.stem}_gt.json")
    return gt if gt.is_file() else None


def read_coco_references(path: str | os.PathLike[str]) -> dict[int, list[str]]:
    """``{image_id: [captions]}`` from a COCO-format caption file (``*_gt.json``)."""
    p = Path(path)
    data = load_json(p, "COCO references file")
    anns = list_field(data, "annotations", f"{p}: not a COCO-format caption file (expected "
                      "{\"annotations\": [{\"image_id\", \"caption\"}, ...]})")
    refs: dict[int, list[str]] = {}
    for n, a in enumerate(anns):
        if not isinstance(a, dict) or not isinstance(a.get("caption"), str) \
                or _int_id(a.get("image_id")) is None:
            raise InputError(f"{p}: annotation {n} needs an integer 'image_id' and a 'caption'")
        if a["caption"].strip():
            refs.setdefault(_int_id(a["image_id"]), []).append(a["caption"].strip())
    return refs


def _int_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = value.rsplit("_", 1)[-1]  # "coco_203564" in BLIP's train file
        return int(digits) if digits.isdigit() else None
    return None


def read_coco_caption_list(path: str | os.PathLike[str],
                           images: str | os.PathLike[str] | None = None,
                           references: str | os.PathLike[str] | None = None) -> list[dict]:
    """Caption records of a BLIP/mmpretrain ``coco_karpathy_<split>.json`` list.

    Entries of one image are merged (train files list each caption separately). With
    ``references`` (a ``*_gt.json``), every image's references come from it, as in
    mmpretrain's metric; an image missing there is an error. The image id is the number at the
    end of the file name, as mmpretrain reads it. ``images`` is the folder holding ``val2014/``
    (default: the file's folder or the one above it).
    """
    p = Path(path)
    data = load_json(p, "COCO caption list")
    if not isinstance(data, list) or not all(isinstance(e, dict) and "image" in e
                                             and "caption" in e for e in data):
        raise InputError(f"{p}: not a COCO caption list (expected [{{\"image\": "
                         "\"val2014/COCO_val2014_....jpg\", \"caption\": [...]}, ...])")
    by_image: dict[str, dict] = {}
    for n, e in enumerate(data):
        where = f"{p}: entry {n}"
        if not isinstance(e["image"], str) or not e["image"].strip():
            raise InputError(f"{where}: 'image' must be a relative path")
        record = by_image.get(e["image"])
        if record is None:
            image_id = _int_id(PurePosixPath(e["image"]).stem)
            if image_id is None:
                image_id = _int_id(e.get("image_id"))
            record = {"task": "caption", "id": str(image_id if image_id is not None
                                                   else e["image"]),
                      "image": e["image"], "caption": []}
            if image_id is not None:
                record["image_id"] = image_id
            by_image[e["image"]] = record
        record["caption"].extend(_refs(e["caption"], where))
    records = list(by_image.values())
    if references is not None:
        gt = read_coco_references(references)
        for r in records:
            if r.get("image_id") not in gt:
                raise InputError(f"{references}: no reference captions for image "
                                 f"{r.get('image_id', r['image'])} of {p}")
            r["caption"] = list(gt[r["image_id"]])
    place_images(records, images, _roots(p), (), str(p))
    return records


# ---------------------------------------------------------------------- official COCO file


def read_coco_captions(path: str | os.PathLike[str],
                       images: str | os.PathLike[str] | None = None) -> list[dict]:
    """Caption records of an official COCO captions file (``captions_val2014.json``), one per
    image with captions, in the order of its ``images`` list. ``images`` is the folder holding
    the files, or the one holding ``val2014/`` (default: near the annotations)."""
    p = Path(path)
    data = load_json(p, "COCO captions file")
    imgs = list_field(data, "images", f"{p}: not a COCO captions file (expected \"images\" "
                      "and \"annotations\" lists)", of_dicts=True)
    if any("file_name" not in i for i in imgs):
        raise InputError(f"{p}: its images have no file_name, so it only holds references; "
                         "pass the image list (coco_karpathy_<split>.json) as the data and this "
                         "file as the annotations")
    refs = read_coco_references(p)
    records = []
    for i in imgs:
        image_id = _int_id(i.get("id"))
        if image_id in refs:
            records.append({"task": "caption", "id": str(image_id), "image_id": image_id,
                            "image": i["file_name"], "caption": refs[image_id]})
    if not records:
        raise InputError(f"{p}: no image has a caption")
    sub = coco_subdir(records[0]["image"])
    place_images(records, images, _roots(p), (sub,) if sub else (), str(p))
    return records
