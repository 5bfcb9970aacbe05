"""One entry point that reads any supported evaluation set into records: :func:`read_eval_data`.

The task says which family of formats to expect, and the path says which one it is (file name,
extension, JSON content; a folder for the ``refer`` layout, ImageNet-style class folders, or a
folder holding the files of several splits):

==========  ====================================================================================
task        data
==========  ====================================================================================
caption     Karpathy ``dataset_coco.json`` (split: train/restval/val/test, default test);
            ``coco_karpathy_<split>.json`` (+ ``coco_karpathy_<split>_gt.json`` references,
            found next to it or given as ``annotations``); COCO ``captions_*.json``; a folder
            holding one of these
ground      a ``refer`` folder (``refs(unc).p`` + ``instances.json``; split default val), the
            ``refer`` data root with the task named refcoco / refcoco+ / refcocog, or a
            ``refs(...).p`` file
vqa         a VQAv2 questions file (annotations found next to it or given), or a folder of them
            with a split (val, test-dev, test)
entail      SNLI-VE ``snli_ve_<split>.jsonl``, or their folder (split default test)
classify    a class-folder tree (``root[/<split>]/<class>/<images>``) with optional
            ``class_names``
summarize   Gigaword source text (reference found by name or given), or their folder
glue        a GLUE TSV (``SST-2/dev.tsv``, ``MNLI/dev_matched.tsv``, OFA's ``sst2_dev.tsv``) or
            a GLUE dataset folder (split default dev); the dataset from the file, or named
            (``glue_dataset``, or the task ``sst2``, ``mnli-mm``, ...)
all         an official OFA ``.tsv`` file (images stay encoded), or our ``.jsonl`` records
==========  ====================================================================================

Records follow :mod:`ofa.data.records` and add ``id`` (unique, stable: resuming keys on it)
and, where the data has them, ``image_id`` / ``question_id`` (for submission files) and
``human_answers`` (VQA). Images are paths (checked for the first record only) or, from TSV
files, encoded bytes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...tasks.glue import get_dataset
from ..glue import find_glue_file, read_glue_tsv
from ..records import TASK_NAMES, read_jsonl
from ..tsv import TSV_LAYOUTS, TSVFile, read_tsv
from .coco import find_coco_references, read_coco_caption_list, read_coco_captions, read_karpathy
from .common import MappedRecords, check_file_split, check_first_image, load_json
from .gigaword import find_gigaword_reference, find_gigaword_source, read_gigaword
from .imagenet import class_candidates, read_class_names, read_image_folder
from .refcoco import find_refer_folder, find_refs_file, read_refer
from .snli_ve import find_snli_ve_file, is_snli_ve_line, read_snli_ve
from .vqav2 import VQA_SPLITS, find_vqa_questions, read_vqav2

__all__ = ["TASK_ALIASES", "EvalData", "read_eval_data", "resolve_task"]

# Benchmark and official task names accepted for the six tasks.
TASK_ALIASES = {"coco": "caption", "coco_caption": "caption", "captioning": "caption",
                "vqav2": "vqa", "vqa_gen": "vqa",
                "refcoco": "ground", "refcoco+": "ground", "refcocoplus": "ground",
                "refcocog": "ground", "grounding": "ground",
                "snli_ve": "entail", "snli-ve": "entail", "snlive": "entail",
                "imagenet": "classify", "image_classify": "classify",
                "gigaword": "summarize", "summarization": "summarize",
                **{name: "glue" for name in ("sst2", "sst-2", "cola", "mrpc", "qqp", "qnli",
                                             "rte", "mnli", "mnli-m", "mnli-mm")}}
_REFER_NAMES = {"refcoco": "refcoco", "refcoco+": "refcoco+", "refcocoplus": "refcoco+",
                "refcocog": "refcocog"}


@dataclass
class EvalData:
    """What :func:`read_eval_data` found.

    ``records`` is a list, except for TSV files: a lazy sequence reading one row per access.
    ``format`` names the detected format; ``candidates`` are the class names a classifier
    ranks (classify only); ``meta`` holds details such as the split, the references file used,
    the VQA subtype, or how many unlabelled examples were skipped.
    """

    records: Sequence[dict]
    format: str
    candidates: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Request:
    task: str
    path: Path
    split: str | None
    images: Path | None
    annotations: Path | None
    class_names: Path | None
    dataset: str | None  # refer dataset named by the task alias; GLUE's dataset


def resolve_task(task: str) -> tuple[str, str | None]:
    """The task name (one of :data:`ofa.data.records.TASK_NAMES`) for ``task`` or an alias,
    and the refer dataset the alias names (``refcoco+`` -> ``("ground", "refcoco+")``)."""
    key = task.strip().lower() if isinstance(task, str) else task
    name = key if key in TASK_NAMES else TASK_ALIASES.get(key)
    if name is None:
        raise InputError(f"unknown evaluation task {task!r}; choose one of {list(TASK_NAMES)} "
                         f"or a benchmark name ({', '.join(TASK_ALIASES)})")
    return name, _REFER_NAMES.get(key) or (key if name == "glue" and key != "glue" else None)


def read_eval_data(task: str, data: str | os.PathLike[str], *, split: str | None = None,
                   images: str | os.PathLike[str] | None = None,
                   annotations: str | os.PathLike[str] | None = None,
                   class_names: str | os.PathLike[str] | None = None,
                   glue_dataset: str | None = None) -> EvalData:
    """Records of the evaluation set at ``data`` for ``task`` (see the module docstring).

    ``split`` picks the split of a file or folder holding several; for a file holding one it
    must not contradict the file's name. ``images`` is the image folder (default: searched
    next to the annotations). ``annotations`` is a separate references file (VQA annotations,
    COCO ``*_gt.json``, Gigaword targets, refer ``instances.json``). ``class_names`` maps
    class folders to names (classify). ``glue_dataset`` names the GLUE dataset of ``data``
    (default: told by the file). Anything wrong raises :class:`~ofa.errors.InputError`.
    """
    name, dataset = resolve_task(task)
    if glue_dataset is not None:
        if name != "glue":
            raise InputError("a GLUE dataset only applies to the glue task")
        if dataset is not None and get_dataset(dataset).name != get_dataset(glue_dataset).name:
            raise InputError(f"task {task!r} and GLUE dataset {glue_dataset!r} disagree")
        dataset = dataset or glue_dataset
    path = Path(data)
    if not path.exists():
        raise InputError(f"evaluation data not found: {path}")
    if class_names is not None and name != "classify":
        raise InputError("a class-names file only applies to the classify task")
    req = _Request(name, path, split, _opt(images), _opt(annotations), _opt(class_names),
                   dataset)
    if name == "glue" and not (path.is_file() and path.suffix.lower() == ".jsonl"):
        result = _glue(req)
    elif path.is_file() and path.suffix.lower() == ".tsv":
        result = _tsv(req)
    elif path.is_file() and path.suffix.lower() == ".jsonl" and not (
            name == "entail" and _first_jsonl_is_snli_ve(path)):
        result = _jsonl(req)
    else:
        result = _READERS[name](req)
    if len(result.records) == 0:
        where = f" (split {split})" if split else ""
        raise InputError(f"{path}{where}: no {name} records")
    return result


def _opt(p: str | os.PathLike[str] | None) -> Path | None:
    return None if p is None else Path(p)


def _unused(req: _Request, fmt: str, *, images: bool = False,
            annotations: bool = False) -> None:
    """Refuse options a format does not use, so a mistyped setup is not silently ignored."""
    if not images and req.images is not None:
        raise InputError(f"{req.path} ({fmt}) does not take an image folder")
    if not annotations and req.annotations is not None:
        raise InputError(f"{req.path} ({fmt}) does not take a separate annotations file")


def _split_default(req: _Request, default: str) -> str:
    return req.split if req.split is not None else default


# ---------------------------------------------------------------------- generic formats


def _tsv(req: _Request) -> EvalData:
    _unused(req, "official TSV: images are embedded")
    check_file_split(req.path, req.split)
    candidates = None
    if req.task == "caption":
        # evaluate_caption.sh selects 1,4,2: the COCO image id is the key the scorer needs.
        base = read_tsv(req.path, "caption", selected_cols="1,4,2", decode_images=False)
        records: Sequence[dict] = MappedRecords(base, _with_int_id("image_id"))
    elif req.task == "vqa":
        records = MappedRecords(read_tsv(req.path, "vqa", decode_images=False),
                                _with_int_id("question_id"))
    else:
        records = read_tsv(req.path, req.task, decode_images=False)
    if req.task == "classify":
        candidates = _candidates(req, lambda: _tsv_labels(req.path))
    return EvalData(records, "tsv", candidates, {"split": req.split})


def _with_int_id(key: str) -> Callable[[dict], dict]:
    def add(record: dict) -> dict:
        if str(record.get("id", "")).isdigit():
            record[key] = int(record["id"])
        return record
    return add


def _tsv_labels(path: Path) -> list[str]:
    """Every distinct label of an ImageNet TSV, read from its label column alone (one pass
    over the file, no image decoding)."""
    layout = TSV_LAYOUTS["classify"]
    col = layout.default_cols[layout.fields.index("label")]
    f = TSVFile(path, (col,))
    labels = {f[i][0].strip() for i in range(len(f))}
    return sorted(label for label in labels if label)


def _candidates(req: _Request, labels: Callable[[], list[str]]) -> list[str]:
    if req.class_names is not None:
        return class_candidates(read_class_names(req.class_names))
    return labels()


def _jsonl(req: _Request) -> EvalData:
    _unused(req, "JSONL records: image paths are relative to the .jsonl file")
    check_file_split(req.path, req.split)
    records = read_jsonl(req.path, [req.task])
    if req.task == "glue" and req.dataset is not None:
        wanted = get_dataset(req.dataset).name
        records = [r for r in records if r["dataset"] == wanted]
    check_first_image(records, str(req.path))
    candidates = None
    if req.task == "classify":
        candidates = _candidates(req, lambda: sorted({r["label"] for r in records}))
    return EvalData(records, "jsonl", candidates, {"split": req.split})


def _first_jsonl_is_snli_ve(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    return is_snli_ve_line(json.loads(line))
                except json.JSONDecodeError:
                    return False
    return False


def _bad_format(req: _Request, expected: str) -> InputError:
    kind = "folder" if req.path.is_dir() else "file"
    return InputError(f"{req.path}: cannot tell the {req.task} data format of this {kind}; "
                      f"expected {expected}, an official OFA .tsv file or .jsonl records")


# ---------------------------------------------------------------------- caption

_CAPTION_EXPECTED = ("Karpathy's dataset_coco.json, coco_karpathy_<split>.json (mmpretrain), "
                     "a COCO captions_*.json, or a folder holding one")


def _caption(req: _Request) -> EvalData:
    p = req.path
    if p.is_dir():
        split = _split_default(req, "test")
        for candidate in (p / "dataset_coco.json", p / f"coco_karpathy_{split}.json",
                          p / "annotations" / f"coco_karpathy_{split}.json"):
            if candidate.is_file():
                return _caption_file(_moved(req, candidate), _caption_kind(candidate))
        raise _bad_format(req, _CAPTION_EXPECTED)
    if p.suffix.lower() != ".json":
        raise _bad_format(req, _CAPTION_EXPECTED)
    return _caption_file(req, _caption_kind(p))


def _moved(req: _Request, path: Path) -> _Request:
    return _Request(req.task, path, req.split, req.images, req.annotations, req.class_names,
                    req.dataset)


def _caption_kind(path: Path) -> str:
    name = path.name
    if name.endswith("_gt.json"):
        raise InputError(f"{path} holds references only; pass the image list "
                         f"({name[:-len('_gt.json')]}.json) as the data and this file as the "
                         "annotations")
    if re.match(r"^dataset_\w+\.json$", name):
        return "karpathy"
    if name.startswith("coco_karpathy_"):
        return "list"
    if name.startswith("captions_"):
        return "coco"
    data = load_json(path, "caption file")  # unusual name: look inside
    if isinstance(data, dict) and isinstance(data.get("images"), list) and data["images"] \
            and isinstance(data["images"][0], dict) and "sentences" in data["images"][0]:
        return "karpathy"
    if isinstance(data, list) and data and isinstance(data[0], dict) \
            and {"image", "caption"} <= set(data[0]):
        return "list"
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return "coco"
    raise InputError(f"{path}: not a caption file this reader knows; expected "
                     f"{_CAPTION_EXPECTED}")


def _caption_file(req: _Request, kind: str) -> EvalData:
    p = req.path
    if kind == "karpathy":
        _unused(req, "Karpathy captions", images=True)
        split = _split_default(req, "test")
        records = read_karpathy(p, split, req.images)
        return EvalData(records, "coco-karpathy", meta={"split": split, "file": str(p)})
    check_file_split(p, req.split)
    if kind == "list":
        refs = req.annotations or find_coco_references(p)
        records = read_coco_caption_list(p, req.images, refs)
        return EvalData(records, "coco-karpathy-list",
                        meta={"split": req.split, "file": str(p),
                              "references": str(refs) if refs else None})
    _unused(req, "COCO captions", images=True)
    records = read_coco_captions(p, req.images)
    return EvalData(records, "coco-captions", meta={"split": req.split, "file": str(p)})


# ---------------------------------------------------------------------- ground


def _ground(req: _Request) -> EvalData:
    p = req.path
    if p.is_file() and p.suffix.lower() not in (".p", ".pkl", ".pickle"):
        raise _bad_format(req, "a refer folder (refs(unc).p + instances.json) or a refs(...).p "
                               "file")
    split = _split_default(req, "val")
    if p.is_dir():
        folder = find_refer_folder(p, req.dataset)
        refs_file = find_refs_file(folder)
    else:
        refs_file = p
    records = read_refer(refs_file, split, req.images, instances=req.annotations)
    split_by = re.match(r"refs\((\w+)\)", refs_file.name)
    return EvalData(records, "refer", meta={
        "split": split, "refs": str(refs_file), "dataset": refs_file.parent.name,
        "split_by": split_by.group(1) if split_by else None})


# ---------------------------------------------------------------------- vqa


def _vqa(req: _Request) -> EvalData:
    p = req.path
    if p.is_dir():
        p = find_vqa_questions(p, req.split)
    elif p.suffix.lower() != ".json":
        raise _bad_format(req, "a VQAv2 questions file (v2_OpenEnded_mscoco_<subtype>"
                               "_questions.json) or a folder of them")
    elif p.name.endswith("_annotations.json"):
        raise InputError(f"{p} is a VQA annotations file; pass the questions file as the data "
                         "(its annotations are found next to it, or give them separately)")
    records, info = read_vqav2(p, req.annotations, req.images)
    if req.split is not None and VQA_SPLITS.get(req.split, req.split) != info["subtype"]:
        raise InputError(f"{p} holds the {info['subtype']} questions, not split {req.split!r}")
    return EvalData(records, "vqav2", meta={"split": req.split, "questions": str(p), **info})


# ---------------------------------------------------------------------- entail


def _entail(req: _Request) -> EvalData:
    p = req.path
    if p.is_dir():
        p = find_snli_ve_file(p, req.split)
    elif p.suffix.lower() != ".jsonl":
        raise _bad_format(req, "SNLI-VE snli_ve_<split>.jsonl or their folder")
    else:
        check_file_split(p, req.split)
    _unused(req, "SNLI-VE", images=True)
    records, skipped = read_snli_ve(p, req.images)
    return EvalData(records, "snli-ve", meta={"split": req.split, "file": str(p),
                                              "skipped_unlabelled": skipped})


# ---------------------------------------------------------------------- classify


def _classify(req: _Request) -> EvalData:
    if not req.path.is_dir():
        raise _bad_format(req, "an image folder with one sub-folder per class")
    _unused(req, "class folders: images are inside")
    records, candidates = read_image_folder(req.path, req.split, req.class_names)
    return EvalData(records, "image-folder", candidates,
                    {"split": req.split, "class_names": str(req.class_names)
                     if req.class_names else None})


# ---------------------------------------------------------------------- summarize


def _summarize(req: _Request) -> EvalData:
    p = req.path
    _unused(req, "Gigaword text", annotations=True)
    if p.is_dir():
        p = find_gigaword_source(p, req.split)
    else:
        check_file_split(p, req.split)
    reference = req.annotations or find_gigaword_reference(p)
    records, skipped = read_gigaword(p, reference)
    return EvalData(records, "gigaword-text", meta={
        "split": req.split, "source": str(p),
        "reference": str(reference) if reference else None, "skipped_blank": skipped})


def _ocr(req: _Request) -> EvalData:
    raise _bad_format(req, "the OFA-OCR TSV layout (uniq_id, base64 image, text)")


# ---------------------------------------------------------------------- glue


def _glue(req: _Request) -> EvalData:
    _unused(req, "GLUE text")
    p, split = req.path, req.split
    if req.dataset in ("mnli-mm", "mnli-m") and split is None:
        split = "dev_mismatched" if req.dataset == "mnli-mm" else "dev_matched"
    dataset = None if req.dataset is None else get_dataset(req.dataset).name
    if p.is_dir():
        p = find_glue_file(p, dataset, split)
    elif p.suffix.lower() != ".tsv":
        raise _bad_format(req, "a GLUE .tsv file (SST-2/dev.tsv, OFA's sst2_dev.tsv) or a "
                               "GLUE dataset folder")
    else:
        check_file_split(p, split)
    records = read_glue_tsv(p, dataset)
    return EvalData(records, f"glue {records.dataset.title} ({records.layout} layout)",
                    meta={"split": split, "file": str(p), "dataset": records.dataset.name,
                          "labelled": records.labelled})


_READERS: dict[str, Callable[[_Request], EvalData]] = {
    "caption": _caption, "ground": _ground, "vqa": _vqa, "entail": _entail,
    "classify": _classify, "summarize": _summarize, "ocr": _ocr}
