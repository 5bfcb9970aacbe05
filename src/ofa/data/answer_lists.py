"""Lists of answers and class names given as files: one entry per line, or (answers only) the
official ``trainval_ans2label.pkl``, read by a loader that accepts plain data only."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .plain_pickle import load_plain_pickle

__all__ = ["read_answer_list", "read_lines"]


def read_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 file; ``what`` names it in errors."""
    p = Path(path)
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} file {p}: {e}") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise InputError(f"{what} file {p} is empty")
    return lines


def read_answer_list(path: str | os.PathLike[str], what: str = "answers") -> list[str]:
    """Candidate answers: one per line, or the keys of an ``ans2label`` pickle (``.pkl``)."""
    p = Path(path)
    if p.suffix != ".pkl":
        return read_lines(p, what)
    table = load_plain_pickle(p)
    if not isinstance(table, dict) or not table or not all(
            isinstance(a, str) and a.strip() for a in table):
        raise InputError(f"{p}: expected a pickled dict of answer -> label id (ans2label)")
    return [a.strip() for a in table]
