"""Readers for the official OFA fine-tuning TSV files (tab-separated, images in base64).

``read_tsv(path, task)`` gives a lazy, indexable sequence of project records (the dicts that
:mod:`ofa.data.records` documents), one per TSV line; each item is parsed and its image decoded
only when it is accessed, so a multi-gigabyte file costs one fast scan to open and works in
DataLoader workers.

As in the official loaders (``data/file_dataset.py``), ``selected_cols`` picks the file's
columns, in the order the task reader expects them. The official files and default columns are
listed in :data:`TSV_LAYOUTS`, each with the official code it was checked against.
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from ..boxes import validate_box
from ..errors import InputError
from ..preprocess import read_image
from ..tasks import get_task

__all__ = [
    "TSV_LAYOUTS",
    "TSV_TASKS",
    "TSVFile",
    "TSVLayout",
    "TSVRecords",
    "LazyRecords",
    "decode_base64_image",
    "decode_base64_bytes",
    "is_image_codes",
    "parse_image_codes",
    "parse_box",
    "parse_vqa_answers",
    "read_tsv",
]

TSV_TASKS = ("caption", "vqa", "ground", "entail", "classify", "summarize", "imagine",
             "ocr")
ENTAIL_LABELS = ("entailment", "contradiction", "neutral")

# The official task names (``--task=...`` in run_scripts) are accepted too.
TASK_ALIASES = {"refcoco": "ground", "vqa_gen": "vqa", "snli_ve": "entail",
                "image_classify": "classify", "gigaword": "summarize", "image_gen": "imagine"}

_CHUNK_BYTES = 1 << 23  # index scan block; big enough to make per-chunk overhead negligible
_UTF8_BOM = b"\xef\xbb\xbf"
_URLSAFE_TO_STD = str.maketrans("-_", "+/")
_CODES = re.compile(r"\d+( \d+)*")


@dataclass(frozen=True)
class TSVLayout:
    """The column layout of one task's official TSV files.

    ``columns`` are the file's columns in order; ``fields`` are what ``selected_cols`` picks,
    in order; ``default_cols`` are the official ``selected_cols``. Trailing fields past
    ``min_fields`` are optional (their columns may be left out of ``selected_cols``).
    """

    task: str
    files: str
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    default_cols: tuple[int, ...]
    min_fields: int
    source: str


TSV_LAYOUTS: dict[str, TSVLayout] = {
    # Files: caption_stage1_train.tsv (one caption per line), caption_stage2_train.tsv,
    # caption_val.tsv, caption_test.tsv (about 5 references per image joined by "&&").
    # CaptionDataset.__getitem__ unpacks ``uniq_id, image, caption``; train_caption_stage1.sh
    # selects 0,4,2, while train_caption_stage2.sh and evaluate_caption.sh select 1,4,2 (the
    # COCO image id as key, which the COCO evaluation needs). Column 3 holds VinVL object tags
    # ("sky&&water&&dock"), unused by the official code.
    "caption": TSVLayout(
        "caption", "caption_{stage1_train,stage2_train,val,test}.tsv",
        ("uniq_id", "image_id", "caption", "object_tags", "image_base64"),
        ("id", "image", "caption"), (0, 4, 2), 3,
        "data/mm_data/caption_dataset.py; run_scripts/caption/train_caption_stage1.sh, "
        "train_caption_stage2.sh, evaluate_caption.sh; README 'Image Captioning'"),
    # Files: vqa_train.tsv, vqa_val.tsv, vqa_test.tsv. VqaGenDataset unpacks
    # ``uniq_id, image, question, ref, predict_objects`` (plus an unused 6th ``caption``);
    # train_vqa_distributed.sh and evaluate_vqa_beam.sh select 0,5,2,3,4. ``ref`` is
    # "conf|!+answer&&conf|!+answer" (confidence first); objects are VinVL tags joined by "&&".
    "vqa": TSVLayout(
        "vqa", "vqa_{train,val,test}.tsv",
        ("question_id", "image_id", "question", "answers", "object_tags", "image_base64"),
        ("id", "image", "question", "answers", "objects"), (0, 5, 2, 3, 4), 4,
        "data/mm_data/vqa_gen_dataset.py; run_scripts/vqa/train_vqa_distributed.sh, "
        "evaluate_vqa_beam.sh; README 'Visual Question Answering'"),
    # Files: refcoco_{train,val,testA,testB}.tsv, refcocoplus_*.tsv, refcocog_{train,val,
    # test}.tsv. RefcocoDataset unpacks ``uniq_id, base64_str, text, region_coord``;
    # train_refcoco.sh and evaluate_refcoco.sh select 0,4,2,3. ``region_coord`` is
    # "x0,y0,x1,y1" in original-image pixels (top-left, bottom-right).
    "ground": TSVLayout(
        "ground", "refcoco{,plus,g}_{train,val,testA,testB,test}.tsv",
        ("uniq_id", "image_id", "text", "region_coord", "image_base64"),
        ("id", "image", "text", "box"), (0, 4, 2, 3), 4,
        "data/mm_data/refcoco_dataset.py; run_scripts/refcoco/train_refcoco.sh, "
        "evaluate_refcoco.sh; README 'Referring Expression Comprehension'"),
    # Files: snli_ve_{train,dev,test}.tsv. Here the image is column 2, not the last one.
    # SnliVeDataset unpacks ``uniq_id, image, hypothesis, caption, label``; train_snli_ve.sh
    # and evaluate_snli_ve.sh select 0,2,3,4,5. ``caption`` is the premise (used with
    # --add-caption); label is entailment / contradiction / neutral.
    "entail": TSVLayout(
        "entail", "snli_ve_{train,dev,test}.tsv",
        ("uniq_id", "image_id", "image_base64", "hypothesis", "premise", "label"),
        ("id", "image", "hypothesis", "premise", "label"), (0, 2, 3, 4, 5), 5,
        "data/mm_data/snli_ve_dataset.py; run_scripts/snli_ve/train_snli_ve.sh, "
        "evaluate_snli_ve.sh; README 'Visual Entailment'"),
    # Files: imagenet_1k_train.tsv, imagenet_1k_val.tsv, imagenet_1k_val_subset.tsv. No id
    # column: ImageClassifyDataset unpacks ``image, label_name`` and uses the row index as id;
    # train_imagenet_distributed.sh and evaluate_imagenet.sh select 0,2. Column 1 is the
    # 1-based class index in Caffe's synset_words.txt order; the base64 is URL-safe ("_9j_").
    "classify": TSVLayout(
        "classify", "imagenet_1k_{train,val,val_subset}.tsv",
        ("image_base64", "class_index", "label"),
        ("image", "label"), (0, 2), 2,
        "data/cv_data/image_classify_dataset.py; run_scripts/image_classify/"
        "train_imagenet_distributed.sh, evaluate_imagenet.sh; README 'Image Classification'"),
    # Files: gigaword_{train,dev,test}.tsv. SummaryDataset unpacks ``source, target``;
    # train_gigaword.sh and evaluate_gigaword.sh select 0,1. No id column.
    "summarize": TSVLayout(
        "summarize", "gigaword_{train,dev,test}.tsv",
        ("source", "target"),
        ("source", "summary"), (0, 1), 2,
        "data/nlg_data/summary_dataset.py; run_scripts/gigaword/train_gigaword.sh, "
        "evaluate_gigaword.sh; README 'Gigaword'"),
    # Files: coco_vqgan_{train,dev,full_test}.tsv. ImageGenDataset unpacks
    # ``uniq_id, text, image_code``; train_image_gen_stage1_distributed.sh and
    # evaluate_image_gen.sh select 0,2,1. ``image_code`` is the 1,024 VQGAN code indices of the
    # 256 px image, separated by spaces (the training targets); evaluation may go without it.
    "imagine": TSVLayout(
        "imagine", "coco_vqgan_{train,dev,full_test}.tsv",
        ("uniq_id", "image_codes", "caption"),
        ("id", "text", "codes"), (0, 2, 1), 2,
        "data/mm_data/image_gen_dataset.py; run_scripts/image_gen/"
        "train_image_gen_stage1_distributed.sh, evaluate_image_gen.sh; README "
        "'Text-to-Image Generation'"),
    # Files: the OFA-OCR TSVs (e.g. ocr_scene_test.tsv, never released; the ModelScope
    # ocr_fudanvi_zh data in this layout). OcrDataset unpacks ``uniq_id, image, caption``;
    # evaluate_ocr.sh selects 0,1,2. The text is the line as written.
    "ocr": TSVLayout(
        "ocr", "ocr_{train,val,test}.tsv",
        ("uniq_id", "image_base64", "text"),
        ("id", "image", "text"), (0, 1, 2), 3,
        "data/mm_data/ocr_dataset.py; run_scripts/ocr/evaluate_ocr.sh"),
}


# ---------------------------------------------------------------------- images


def decode_base64_bytes(data: str | bytes) -> bytes:
    """The image file bytes in a base64 string (standard or URL-safe alphabet, padding
    optional, an optional ``data:...;base64,`` prefix)."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise InputError("image column is not base64 text (non-ASCII bytes)") from None
    if not isinstance(data, str):
        raise InputError(f"base64 image must be str or bytes, got {type(data).__name__}")
    text = data.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if not text:
        raise InputError("image column is empty; expected a base64-encoded image")
    # The official loaders call urlsafe_b64decode, which takes both alphabets: ImageNet files
    # use "-_", the others "+/". Padding is restored because some writers drop it.
    text = text.translate(_URLSAFE_TO_STD)
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"image column is not valid base64 ({e})") from None


def decode_base64_image(data: str | bytes) -> Image.Image:
    """Decode a base64 image (as in the official TSV files) to an RGB PIL image.

    Decoded by :func:`ofa.preprocess.read_image`, the loader every image goes through: corrupt
    data and images above the pixel limit (``OFA_MAX_PIXELS``) raise an
    :class:`~ofa.errors.InputError` (its ``ImageError``).
    """
    return read_image(decode_base64_bytes(data))


# ---------------------------------------------------------------------- field parsers


def parse_vqa_answers(text: str) -> dict[str, float]:
    """``"0.6|!+no&&1.0|!+yes"`` -> ``{"no": 0.6, "yes": 1.0}`` (confidence first, as in the
    official ``ref`` column). A repeated answer keeps its last confidence, as officially."""
    answers: dict[str, float] = {}
    for item in text.strip().split("&&"):
        if not item.strip():
            continue  # tolerate a stray "&&" at either end
        conf, sep, answer = item.partition("|!+")
        if not sep:
            raise InputError(f"answer {item!r} is not 'confidence|!+answer'")
        try:
            value = float(conf)
        except ValueError:
            raise InputError(f"confidence {conf!r} in {item!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"confidence in {item!r} must be a finite number >= 0")
        if not answer.strip():
            raise InputError(f"answer {item!r} has an empty answer text")
        answers[answer.strip()] = value
    if not answers:
        raise InputError("answers column is empty; expected 'confidence|!+answer&&...'")
    return answers


def is_image_codes(text: str) -> bool:
    """Whether ``text`` is a text-to-image TSV's code cell: integers separated by spaces."""
    return _CODES.fullmatch(text.strip()) is not None


def parse_image_codes(text: str) -> list[int]:
    """The VQGAN code indices of a text-to-image TSV cell (``"12 7 4095 ..."``)."""
    if not is_image_codes(text):
        raise InputError("the image codes column must hold integers separated by spaces")
    return [int(c) for c in text.split()]


def parse_box(text: str) -> list[float]:
    """``"x0,y0,x1,y1"`` (the official ``region_coord`` column) -> four floats in pixels."""
    parts = text.strip().split(",")
    if len(parts) != 4:
        raise InputError(f"box {text!r} must be 4 comma-separated numbers 'x0,y0,x1,y1'")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"box {text!r} must be 4 comma-separated numbers 'x0,y0,x1,y1'") \
            from None
    return list(validate_box(values))


# ---------------------------------------------------------------------- line index


def _parse_cols(cols: Sequence[int] | str | None, where: str) -> tuple[int, ...] | None:
    if cols is None:
        return None
    if isinstance(cols, str):  # the official scripts' "0,4,2" form
        try:
            cols = [int(c) for c in cols.split(",")]
        except ValueError:
            raise InputError(f"{where}: selected_cols {cols!r} must be like '0,4,2'") from None
    out = []
    for c in cols:
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
            raise InputError(f"{where}: selected_cols must be column numbers >= 0, got {cols!r}")
        out.append(int(c))
    if not out:
        raise InputError(f"{where}: selected_cols is empty")
    return tuple(out)


def _index_lines(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Byte offsets of every line start (plus the end of the file), the indices of the
    non-blank lines when some are blank (None otherwise), and the file's (size, mtime)."""
    found = [np.zeros(1, dtype=np.int64)]
    pos = 0
    with open(path, "rb", buffering=0) as f:
        stamp = os.fstat(f.fileno())
        buf = bytearray(_CHUNK_BYTES)
        while n := f.readinto(buf):
            hits = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8, count=n) == 0x0A)
            if hits.size:
                found.append(hits.astype(np.int64) + (pos + 1))
            pos += n
        bounds = np.concatenate(found)
        if bounds[-1] != pos:  # last line without a trailing newline
            bounds = np.append(bounds, np.int64(pos))
        # Only lines of at most 2 bytes can be blank ("\n", "\r\n"); checking just those keeps
        # the scan vectorised.
        blank = []
        for i in np.flatnonzero(np.diff(bounds) <= 2):
            f.seek(int(bounds[i]))
            if not f.read(int(bounds[i + 1] - bounds[i])).strip(b"\r\n"):
                blank.append(i)
    rows = np.delete(np.arange(len(bounds) - 1, dtype=np.int64), blank) if blank else None
    return bounds, rows, (stamp.st_size, stamp.st_mtime_ns)


class TSVFile:
    """Random access to the lines of a large TSV file without loading it.

    Line offsets are indexed once (a binary scan); blank lines are skipped. ``tsv[i]`` is row
    ``i``'s columns (only ``selected_cols``, in that order, when given). ``num_columns`` makes
    every row need exactly that many columns. The object pickles without its file handle and
    re-opens the file lazily in each process, so it can be handed to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike[str], selected_cols: Sequence[int] | str |
                 None = None, num_columns: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"TSV file not found: {self.path}")
        self.selected_cols = _parse_cols(selected_cols, str(self.path))
        self.num_columns = num_columns
        if num_columns is not None and self.selected_cols and max(self.selected_cols) >= \
                num_columns:
            raise InputError(f"{self.path}: selected_cols {list(self.selected_cols)} exceed "
                             f"the {num_columns} columns of this file")
        try:
            self._bounds, self._rows, self._stamp = _index_lines(self.path)
        except OSError as e:
            raise InputError(f"cannot read TSV file {self.path}: {e}") from None
        self._fh: Any = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bounds) - 1 if self._rows is None else len(self._rows)

    def __repr__(self) -> str:
        return f"TSVFile({str(self.path)!r}, rows={len(self)})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_fh=None, _pid=None, _lock=None)  # handles and locks do not cross processes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close this process's file handle (it re-opens on the next access)."""
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh = self._pid = None

    def _index(self, i: int) -> int:
        n = len(self)
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows of {self.path}")
        return i

    def line_number(self, i: int) -> int:
        """The 1-based line number of row ``i`` in the file."""
        i = self._index(i)
        return (i if self._rows is None else int(self._rows[i])) + 1

    def _handle(self) -> Any:
        # A handle inherited through fork shares its file position with the parent, so each
        # process opens its own; a changed file would make every stored offset wrong.
        if self._fh is None or self._pid != os.getpid():
            try:
                st = self.path.stat()
                fh = open(self.path, "rb")
            except OSError as e:
                raise InputError(f"cannot read TSV file {self.path}: {e}") from None
            if (st.st_size, st.st_mtime_ns) != self._stamp:
                fh.close()
                raise InputError(f"{self.path} changed after it was indexed; open it again")
            self._fh, self._pid = fh, os.getpid()
        return self._fh

    def raw_line(self, i: int) -> bytes:
        """Row ``i`` as bytes, without its line ending."""
        line = self.line_number(i) - 1
        start, end = int(self._bounds[line]), int(self._bounds[line + 1])
        fh = self._handle()
        if hasattr(os, "pread"):  # positioned read: no shared offset, no lock needed
            data = os.pread(fh.fileno(), end - start, start)
        else:
            with self._lock:
                fh.seek(start)
                data = fh.read(end - start)
        if len(data) != end - start:
            raise InputError(f"{self.path} changed after it was indexed; open it again")
        if data.endswith(b"\n"):
            data = data[:-1]
        if data.endswith(b"\r"):  # CRLF files
            data = data[:-1]
        if line == 0 and data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM):]
        return data

    def __getitem__(self, i: int) -> list[str]:
        line_no = self.line_number(i)
        try:
            cols = self.raw_line(i).decode("utf-8").split("\t")
        except UnicodeDecodeError as e:
            raise InputError(f"{self.path}:{line_no}: not valid UTF-8 text (byte {e.start})") \
                from None
        if self.num_columns is not None and len(cols) != self.num_columns:
            raise InputError(f"{self.path}:{line_no}: found {len(cols)} tab-separated columns, "
                             f"expected {self.num_columns}")
        if self.selected_cols is None:
            return cols
        if max(self.selected_cols) >= len(cols):
            raise InputError(f"{self.path}:{line_no}: found {len(cols)} tab-separated columns, "
                             f"expected at least {max(self.selected_cols) + 1} for selected_cols "
                             f"{list(self.selected_cols)}")
        return [cols[c] for c in self.selected_cols]


# ---------------------------------------------------------------------- records


@dataclass
class _Row:
    """One selected row being turned into a record, with the context for its errors."""

    values: dict[str, str]
    where: str
    default_id: str
    decode_images: bool

    def id(self) -> str:
        return self.values["id"].strip() or self.default_id

    def image(self) -> Image.Image | bytes:
        data = self.values["image"]
        return decode_base64_image(data) if self.decode_images else decode_base64_bytes(data)

    def text(self, field: str, what: str) -> str:
        value = self.values[field].strip()
        if not value:
            raise InputError(f"the {what} column is empty")
        return value


def _caption(row: _Row) -> dict:
    # Val/test/stage-2 files join an image's references with "&&"; stage-1 files hold one.
    refs = [r.strip() for r in row.values["caption"].split("&&") if r.strip()]
    if not refs:
        raise InputError("the caption column is empty")
    return {"task": "caption", "id": row.id(), "image": row.image(),
            "caption": refs[0] if len(refs) == 1 else refs}


def _vqa(row: _Row) -> dict:
    record = {"task": "vqa", "id": row.id(), "image": row.image(),
              "question": row.text("question", "question"),
              "answers": parse_vqa_answers(row.values["answers"])}
    objects = [o.strip() for o in row.values.get("objects", "").split("&&") if o.strip()]
    if objects:
        record["objects"] = objects
    return record


def _ground(row: _Row) -> dict:
    return {"task": "ground", "id": row.id(), "image": row.image(),
            "text": row.text("text", "referring expression"),
            "box": parse_box(row.values["box"])}


def _entail(row: _Row) -> dict:
    label = row.values["label"].strip().lower()
    if label not in ENTAIL_LABELS:
        raise InputError(f"label {row.values['label']!r} must be one of {list(ENTAIL_LABELS)}")
    record = {"task": "entail", "id": row.id(), "image": row.image(),
              "hypothesis": row.text("hypothesis", "hypothesis")}
    if row.values["premise"].strip():
        record["premise"] = row.values["premise"].strip()
    record["label"] = label
    return record


def _classify(row: _Row) -> dict:
    return {"task": "classify", "id": row.default_id, "image": row.image(),
            "label": row.text("label", "class name")}


def _summarize(row: _Row) -> dict:
    return {"task": "summarize", "id": row.default_id,
            "source": row.text("source", "source"), "summary": row.text("summary", "summary")}


def _imagine(row: _Row) -> dict:
    record: dict[str, Any] = {"task": "imagine", "id": row.id(),
                              "text": row.text("text", "caption")}
    if row.values.get("codes", "").strip():
        record["codes"] = parse_image_codes(row.values["codes"])
        get_task("imagine").check_record(record)  # a square grid of codes
    return record


def _ocr(row: _Row) -> dict:
    return {"task": "ocr", "id": row.id(), "image": row.image(),
            "text": row.text("text", "text")}


_PARSERS: dict[str, Callable[[_Row], dict]] = {
    "caption": _caption, "vqa": _vqa, "ground": _ground, "entail": _entail,
    "classify": _classify, "summarize": _summarize, "imagine": _imagine, "ocr": _ocr,
}


def _field_count(layout: TSVLayout) -> str:
    n, m = layout.min_fields, len(layout.fields)
    return str(m) if n == m else f"{n} or {m}" if m == n + 1 else f"{n} to {m}"


def _resolve_task(task: str, path: str | os.PathLike[str]) -> str:
    name = TASK_ALIASES.get(task, task) if isinstance(task, str) else None
    if name not in TSV_LAYOUTS:
        raise InputError(f"{path}: unknown TSV task {task!r}; choose one of {list(TSV_TASKS)} "
                         f"or an official name ({', '.join(TASK_ALIASES)})")
    return name


class LazyRecords(Sequence[dict]):
    """Records made one at a time when accessed (:meth:`record`), so a large file is read one
    row at a time; a slice gives a list."""

    def record(self, i: int) -> dict:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> dict: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict]: ...

    def __getitem__(self, i: int | slice) -> dict | list[dict]:
        if isinstance(i, slice):
            return [self.record(j) for j in range(*i.indices(len(self)))]
        return self.record(i)


class TSVRecords(LazyRecords):
    """The records of one official TSV file; each is parsed (image decoded) on access.

    Records without an id column (classify, summarize) get ``"<file stem>-<line number>"``,
    the id :func:`ofa.data.records.read_jsonl` gives lines without one.
    """

    def __init__(self, file: TSVFile, task: str, decode_images: bool = True) -> None:
        self.file = file
        self.task = _resolve_task(task, file.path)
        self.layout = TSV_LAYOUTS[self.task]
        self.decode_images = decode_images

    @property
    def path(self) -> Path:
        return self.file.path

    def __len__(self) -> int:
        return len(self.file)

    def __repr__(self) -> str:
        return f"TSVRecords({str(self.path)!r}, task={self.task!r}, rows={len(self)})"

    def record(self, i: int) -> dict:
        line_no = self.file.line_number(i)
        where = f"{self.path}:{line_no}"
        cols, fields = self.file[i], self.layout.fields
        if not self.layout.min_fields <= len(cols) <= len(fields):
            raise InputError(f"{where}: {self.task} needs {_field_count(self.layout)} "
                             f"columns ({', '.join(fields)}), got {len(cols)}")
        values = dict(zip(fields, cols, strict=False))
        row = _Row(values, where, f"{self.path.stem}-{line_no}", self.decode_images)
        try:
            return _PARSERS[self.task](row)
        except InputError as e:
            raise InputError(f"{row.where}: {e}") from None


def read_tsv(path: str | os.PathLike[str], task: str,
             selected_cols: Sequence[int] | str | None = None,
             decode_images: bool = True) -> TSVRecords:
    """Records of an official OFA TSV file for ``task`` (one of :data:`TSV_TASKS`, or an
    official task name such as ``refcoco``), parsed lazily per item.

    ``selected_cols`` (default: the official one, see :data:`TSV_LAYOUTS`) lists the file
    columns holding the task's fields, in the layout's ``fields`` order; with the default,
    every line must have exactly the official number of columns. ``decode_images=False``
    leaves each ``image`` as the encoded file bytes, which :func:`ofa.preprocess.load_image`
    decodes later. Malformed lines raise :class:`~ofa.errors.InputError` naming the file and
    line when they are read. GLUE's files have readers of their own (:mod:`ofa.data.glue`).
    """
    name = _resolve_task(task, path)
    layout = TSV_LAYOUTS[name]
    cols = _parse_cols(selected_cols, str(path))
    if cols is not None and not layout.min_fields <= len(cols) <= len(layout.fields):
        raise InputError(f"{path}: selected_cols for {name} must pick {_field_count(layout)} "
                         f"columns ({', '.join(layout.fields)}), got {list(cols)}")
    if cols is None:
        tsv = TSVFile(path, layout.default_cols, num_columns=len(layout.columns))
    else:
        tsv = TSVFile(path, cols)
    return TSVRecords(tsv, name, decode_images)
