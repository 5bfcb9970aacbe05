"""Readers of the GLUE files: the TSVs as GLUE distributes them (``SST-2/train.tsv`` ...) and
OFA's own ``glue_data`` files (``sst2_train.tsv`` ...), into records of the ``glue`` task
(:mod:`ofa.tasks.glue`): ``{"task": "glue", "dataset", "id", "text", "text2", "label"}``.

GLUE's files have a header naming their columns (CoLA's train and dev files have none: source,
label, mark, sentence); test files have no label column and give records without ``label``.
OFA's files have no header; the official ``selected_cols`` of run_scripts/glue/train_*.sh pick
the text(s) and the label (:data:`OFA_COLUMNS`). The dataset is told by the header, else by the
file's or its folder's name (``SST-2/dev.tsv``, ``mnli_train.tsv``), else it must be named.
Rows are parsed when accessed (QQP and MNLI hold ~400k); a bad row is an InputError naming the
file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..tasks.glue import DATASET_NAMES, GlueDataset, get_dataset
from .tsv import LazyRecords, TSVFile

__all__ = ["GLUE_COLUMNS", "OFA_COLUMNS", "GlueRecords", "detect_dataset", "find_glue_file",
           "read_glue_tsv"]


@dataclass(frozen=True)
class GlueColumns:
    """Where a GLUE file's header puts the text(s), the label and the id."""

    texts: tuple[str, ...]
    label: str
    ids: tuple[str, ...] = ("index", "id")


# the columns GLUE's own headers name (labels absent from test files)
GLUE_COLUMNS: dict[str, GlueColumns] = {
    "sst2": GlueColumns(("sentence",), "label"),
    "cola": GlueColumns(("sentence",), "label"),
    "mrpc": GlueColumns(("#1 String", "#2 String"), "Quality"),
    "qqp": GlueColumns(("question1", "question2"), "is_duplicate"),
    "qnli": GlueColumns(("question", "sentence"), "label"),
    "rte": GlueColumns(("sentence1", "sentence2"), "label"),
    "mnli": GlueColumns(("sentence1", "sentence2"), "gold_label"),
}
# CoLA's train/dev files: no header; source, label, mark, sentence
_COLA_NO_HEADER = {"text": 3, "label": 1}
# OFA's glue_data files: the official selected_cols (run_scripts/glue/train_<name>.sh), text(s)
# then label, as data/nlu_data/<name>_dataset.py unpacks them
OFA_COLUMNS: dict[str, tuple[int, ...]] = {
    "sst2": (0, 1), "cola": (1, 2), "mrpc": (0, 1, 2), "qqp": (3, 4, 5), "qnli": (1, 2, 3),
    "rte": (1, 2, 3), "mnli": (0, 1, 2)}
# a header column only one dataset has (MNLI's sentence1 / sentence2 are RTE's too)
_HEADER_MARKS = {"gold_label": "mnli", "promptID": "mnli", "#1 String": "mrpc",
                 "question1": "qqp", "question": "qnli"}
# the folder names GLUE's download uses, and OFA's file-name prefixes
_NAME = re.compile(r"(?<![a-z])(sst-?2|cola|mrpc|qqp|qnli|rte|mnli)(?![a-z])", re.IGNORECASE)


def header_dataset(header: Sequence[str] | None) -> str | None:
    """The dataset whose GLUE header ``header`` is, when a column only it has tells."""
    names = {h.strip() for h in header or ()}
    return next((name for mark, name in _HEADER_MARKS.items() if mark in names), None)


def detect_dataset(path: str | os.PathLike[str], header: Sequence[str] | None = None
                   ) -> str | None:
    """The dataset a file holds, from its header (MRPC's ``#1 String`` ...) or its name or
    folder (``SST-2/dev.tsv``, ``qnli_train.tsv``); None when neither tells."""
    found = header_dataset(header)
    if found:
        return found
    p = Path(path)
    for part in (p.name, p.parent.name):
        m = _NAME.search(part)
        if m:
            return get_dataset(m.group(1)).name
    names = {h.strip() for h in header or ()}
    if {"sentence1", "sentence2"} <= names:
        return "rte"
    if {"sentence", "label"} <= names:
        return "sst2"  # CoLA's test file (index, sentence) has no label
    return None


def _header(file: TSVFile, ds: GlueDataset) -> dict[str, int] | None:
    """Column index by name when the first row is GLUE's header of ``ds``, else None."""
    if len(file) == 0:
        return None
    first = [c.strip() for c in file[0]]
    columns = GLUE_COLUMNS[ds.name]
    if all(t in first for t in columns.texts):
        return {name: i for i, name in enumerate(first)}
    return None


class GlueRecords(LazyRecords):
    """The records of one GLUE file (see the module docstring); ``len`` and indexing as a
    list. ``labelled``: whether its rows carry labels (test files do not)."""

    def __init__(self, path: str | os.PathLike[str], dataset: str | None = None,
                 selected_cols: Sequence[int] | str | None = None) -> None:
        self.file = TSVFile(path)
        self.path = self.file.path
        header = self.file[0] if len(self.file) else None
        name = dataset if dataset is not None else detect_dataset(self.path, header)
        if name is None:
            raise InputError(f"{self.path}: cannot tell which GLUE dataset this file holds; "
                             f"name it ({', '.join(DATASET_NAMES)}), or keep GLUE's folder "
                             "names (SST-2/dev.tsv) or OFA's file names (sst2_dev.tsv)")
        self.dataset = get_dataset(name)
        ds = self.dataset
        other = header_dataset(header)
        if other is not None and other != ds.name:
            raise InputError(f"{self.path}: its header is {get_dataset(other).title}'s, not "
                             f"{ds.title}'s")
        n_texts = 2 if ds.pair else 1
        names = _header(self.file, ds) if selected_cols is None else None
        self.first = 0
        self.id_col: int | None = None
        if names is not None:  # GLUE's layout, by its header
            self.first = 1
            columns = GLUE_COLUMNS[ds.name]
            self.text_cols = tuple(names[t] for t in columns.texts)
            self.label_col = names.get(columns.label)
            self.id_col = next((names[i] for i in columns.ids if i in names), None)
            self.layout = "glue"
        elif selected_cols is None and ds.name == "cola" and header is not None \
                and len(header) == 4:
            self.text_cols, self.label_col = (_COLA_NO_HEADER["text"],), _COLA_NO_HEADER["label"]
            self.layout = "glue"
        else:  # OFA's glue_data layout
            cols = OFA_COLUMNS[ds.name] if selected_cols is None else _columns(selected_cols,
                                                                                 self.path)
            if len(cols) not in (n_texts, n_texts + 1):
                raise InputError(f"{self.path}: selected_cols for {ds.title} pick "
                                 f"{n_texts} text column(s) and then the label, got {list(cols)}")
            self.text_cols, self.label_col = cols[:n_texts], (cols[n_texts]
                                                              if len(cols) > n_texts else None)
            self.layout = "ofa"
        self.labelled = self.label_col is not None
        if len(self) == 0:
            raise InputError(f"{self.path}: no {ds.title} rows")
        self.record(0)  # a file of the wrong layout fails here, not minutes into a run

    def __len__(self) -> int:
        return len(self.file) - self.first

    def __repr__(self) -> str:
        return f"GlueRecords({str(self.path)!r}, dataset={self.dataset.name!r}, rows={len(self)})"

    def record(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows of {self.path}")
        row = i + self.first
        line = self.file.line_number(row)
        where = f"{self.path}:{line}"
        cols = self.file[row]
        wanted = [*self.text_cols, *([self.label_col] if self.labelled else []),
                  *([self.id_col] if self.id_col is not None else [])]
        if max(wanted) >= len(cols):
            raise InputError(f"{where}: found {len(cols)} tab-separated columns, expected at "
                             f"least {max(wanted) + 1} ({self.dataset.title}, {self.layout} "
                             "layout)")
        ds = self.dataset
        texts = [cols[c].strip() for c in self.text_cols]
        if not all(texts):
            raise InputError(f"{where}: an empty text column")
        rid = cols[self.id_col].strip() if self.id_col is not None else ""
        record = {"task": "glue", "dataset": ds.name, "id": rid or f"{self.path.stem}-{line}",
                  "text": texts[0]}
        if ds.pair:
            record["text2"] = texts[1]
        if self.labelled:
            raw = cols[self.label_col].strip()
            if ds.word(raw) is None:
                raise InputError(f"{where}: {ds.title} label must be one of "
                                 f"{list(ds.labels)}, got {raw!r}")
            record["label"] = ds.word(raw)
        return record


def _columns(cols: Sequence[int] | str, path: Path) -> tuple[int, ...]:
    values = cols.split(",") if isinstance(cols, str) else list(cols)
    try:
        out = tuple(int(c) for c in values)
    except (TypeError, ValueError):
        raise InputError(f"{path}: selected_cols must be column numbers, got {cols!r}") from None
    if not out or min(out) < 0:
        raise InputError(f"{path}: selected_cols must be column numbers >= 0, got {cols!r}")
    return out


def read_glue_tsv(path: str | os.PathLike[str], dataset: str | None = None,
                  selected_cols: Sequence[int] | str | None = None) -> GlueRecords:
    """The records of a GLUE file (GLUE's layout, or OFA's with the official or given
    ``selected_cols``), parsed lazily; see the module docstring."""
    if not Path(path).is_file():
        raise InputError(f"GLUE file not found: {path}")
    return GlueRecords(path, dataset, selected_cols)


def find_glue_file(folder: Path, dataset: str | None, split: str | None) -> Path:
    """The file of ``split`` in a GLUE dataset folder: ``<split>.tsv`` (default dev; MNLI:
    dev_matched, ``dev_mismatched`` / ``mnli-mm`` the other)."""
    name = dataset or detect_dataset(folder / "x.tsv")
    default = "dev_matched" if name == "mnli" else "dev"
    want = {"dev-mm": "dev_mismatched", "test-mm": "test_mismatched"}.get(split or "", split)
    candidates = [f"{want or default}.tsv"]
    if name == "mnli" and want in ("dev", "test"):
        candidates.insert(0, f"{want}_matched.tsv")
    for c in candidates:
        if (folder / c).is_file():
            return folder / c
    found = sorted(p.name for p in folder.glob("*.tsv"))
    raise InputError(f"{folder}: no {candidates[0]} here (found: {', '.join(found) or 'none'}); "
                     "pick one with --split or give the file")
