"""Gigaword headline generation as plain text files: one article per line in a source file and
the reference headline on the same line of a target file.

The reference file is found next to the source by these naming conventions (or given):

===============================  ==================================  ======================
source                           reference                           from
===============================  ==================================  ======================
``test.src.txt``, ``test.src``   ``test.tgt.txt``, ``test.tgt``      common seq2seq layout
``test.source``                  ``test.target``                     fairseq / HF examples
``train.article.txt``            ``train.title.txt``                 harvardnlp sumdata
``valid.article.filter.txt``     ``valid.title.filter.txt``          harvardnlp sumdata
``Giga/input.txt``               ``Giga/task1_ref0.txt``             harvardnlp test set
===============================  ==================================  ======================

Records: ``{"task": "summarize", "id": "<source stem>-<line number>", "source", "summary"}``;
lines whose article or headline is blank are skipped (and counted).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ...errors import InputError
from .common import require_file

__all__ = ["find_gigaword_reference", "find_gigaword_source", "read_gigaword"]

# (word in the source name, word in the reference name); words are separated by . _ -
_RENAMES = (("src", "tgt"), ("source", "target"), ("article", "title"))
_SPLIT_ALIASES = {"val": ("valid", "val", "dev"), "valid": ("valid", "val", "dev"),
                  "dev": ("dev", "valid", "val")}
_SOURCE_PATTERNS = ("{}.src.txt", "{}.source", "{}.src", "{}.article.txt",
                    "{}.article.filter.txt")


def find_gigaword_reference(source: str | os.PathLike[str]) -> Path | None:
    """The reference file matching ``source`` by the conventions above, if it exists."""
    s = Path(source)
    candidates = []
    if s.name == "input.txt":
        candidates.append(s.with_name("task1_ref0.txt"))
    for word, ref in _RENAMES:
        name, n = re.subn(rf"(?<![A-Za-z]){word}(?![A-Za-z])", ref, s.name)
        if n:
            candidates.append(s.with_name(name))
    return next((c for c in candidates if c.is_file() and c != s), None)


def find_gigaword_source(folder: str | os.PathLike[str], split: str | None = None) -> Path:
    """The source file of ``split`` (default test) in ``folder``, by the names above."""
    f = Path(folder)
    split = split or "test"
    names = [pat.format(s) for s in _SPLIT_ALIASES.get(split, (split,))
             for pat in _SOURCE_PATTERNS]
    if split == "test":
        names += ["input.txt", "Giga/input.txt"]
    for name in names:
        if (f / name).is_file():
            return f / name
    raise InputError(f"{f}: no Gigaword source file for split {split!r} (looked for "
                     f"{', '.join(names)})")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from None


def read_gigaword(source: str | os.PathLike[str],
                  reference: str | os.PathLike[str] | None = None) -> tuple[list[dict], int]:
    """Summarization records pairing the lines of ``source`` and ``reference`` (default: found
    by :func:`find_gigaword_reference`), and how many blank pairs were skipped."""
    src = require_file(source, "Gigaword source file")
    if reference is None:
        reference = find_gigaword_reference(src)
        if reference is None:
            raise InputError(f"no reference file found for {src} (expected e.g. test.tgt.txt "
                             "next to test.src.txt, or task1_ref0.txt next to input.txt); "
                             "pass it as the annotations")
    ref = require_file(reference, "Gigaword reference file")
    articles, titles = _lines(src), _lines(ref)
    if len(articles) != len(titles):
        raise InputError(f"{src} has {len(articles)} lines but {ref} has {len(titles)}; "
                         "they must pair line by line")
    records, skipped = [], 0
    for n, (article, title) in enumerate(zip(articles, titles, strict=True), 1):
        if not article.strip() or not title.strip():
            skipped += 1
            continue
        records.append({"task": "summarize", "id": f"{src.stem}-{n}",
                        "source": article.strip(), "summary": title.strip()})
    return records, skipped
