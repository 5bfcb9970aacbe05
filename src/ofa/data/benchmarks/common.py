"""Helpers shared by the benchmark readers (:mod:`ofa.data.benchmarks.sets` and the per-dataset
modules): reading JSON with clear errors, checking a file's split, and finding the image folder.

Benchmark annotations name images relative to a folder that people keep in many places, so
readers put a *relative* path in each record's ``image`` and :func:`place_images` picks the
folder: the one given, or a few usual places next to the annotations, checking that the first
record's image is really there (one file, not all, so opening a large set stays fast).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..tsv import LazyRecords

__all__ = ["MappedRecords", "check_file_split", "check_first_image", "load_json",
           "place_images", "require_file", "split_words"]


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path; InputError naming ``what`` unless it is an existing file."""
    p = Path(path)
    if not p.is_file():
        kind = "a folder, not a file" if p.is_dir() else "not found"
        raise InputError(f"{what} {p}: {kind}")
    return p


def load_json(path: str | os.PathLike[str], what: str) -> Any:
    """The parsed JSON file ``path`` (``what`` names it in errors, e.g. "VQA questions file")."""
    p = require_file(path, what)
    try:
        with p.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {p}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e}") from None


def list_field(data: Any, key: str, error: str, *, of_dicts: bool = False) -> list:
    """``data[key]`` when ``data`` is an object holding a list there (of objects, with
    ``of_dicts``); otherwise InputError(``error``), which should say what was expected."""
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list) or (of_dicts and not all(isinstance(i, dict) for i in items)):
        raise InputError(error)
    return items


# ---------------------------------------------------------------------- splits

# Split names as they appear in file names; longer names first so "test-dev2015" is not "test".
_SPLIT_RE = re.compile(r"(?<![a-z])(test-dev|testa|testb|restval|train|valid|val|dev|test)"
                       r"(?![a-z])")
_VAL_NAMES = {"val", "valid", "dev"}


def split_words(name: str) -> set[str]:
    """The split names in a file name, lowercased: ``"v2_..._test-dev2015_q.json"`` ->
    ``{"test-dev"}``; ``val``, ``valid`` and ``dev`` are reported as written."""
    return {m.group(1) for m in _SPLIT_RE.finditer(name.lower())}


def _same_split(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or (a in _VAL_NAMES and b in _VAL_NAMES)


def check_file_split(path: Path, split: str | None) -> None:
    """A file that holds one split cannot be filtered by ``split``: accept ``split`` when the
    file's name mentions it (or mentions no split at all), refuse it when the name says the
    file is another split, so ``--split test`` on a val file is not silently scored as test."""
    if split is None:
        return
    found = split_words(path.name)
    wanted = split_words(split) or {split.lower()}
    if found and not any(_same_split(f, w) for f in found for w in wanted):
        raise InputError(f"{path} holds the {'/'.join(sorted(found))} split (from its name), "
                         f"not {split!r}; pass the file of that split, or leave out the split")


# ---------------------------------------------------------------------- images


def check_first_image(records: Sequence[dict], where: str) -> None:
    """InputError unless the first record's image (a path) exists; bytes are not checked."""
    if not records:
        return
    image = records[0].get("image")
    if isinstance(image, str | os.PathLike) and not Path(image).is_file():
        raise InputError(f"{where}: image of the first record ({records[0].get('id')}) not "
                         f"found: {image}")


def place_images(records: list[dict], images: str | os.PathLike[str] | None,
                 default_roots: Iterable[Path], subdirs: Sequence[str] = (),
                 where: str = "") -> Path:
    """Turn each record's relative ``image`` into a path under the image folder and return it.

    The folder is ``images`` when given, else the first of ``default_roots``; each root is
    also tried with ``subdirs`` appended (e.g. ``train2014``). The first candidate holding the
    first record's image wins; none holding it is an error listing where it looked.
    """
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise InputError(f"image folder not found: {root}")
        roots = [root]
    else:
        roots = list(dict.fromkeys(default_roots))
    candidates = [r / s if s else r for r in roots for s in ("", *subdirs)]
    if not records:
        return candidates[0].resolve()
    first = records[0]["image"]
    for candidate in candidates:
        if (candidate / first).is_file():
            root = candidate.resolve()
            break
    else:
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        hint = "" if images is not None else "; pass the image folder (--images)"
        prefix = f"{where}: " if where else ""
        raise InputError(f"{prefix}image {first} of the first record ({records[0].get('id')}) "
                         f"was not found in {tried}{hint}")
    for record in records:
        record["image"] = str(root / record["image"])
    return root


# ---------------------------------------------------------------------- lazy records


class MappedRecords(LazyRecords):
    """``fn`` applied to each item of a (lazy) sequence of records when it is accessed, so a
    large TSV file keeps being read one row at a time."""

    def __init__(self, base: Sequence[dict], fn: Callable[[dict], dict]) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __repr__(self) -> str:
        return f"MappedRecords({self.base!r})"

    def record(self, i: int) -> dict:
        return self.fn(self.base[i])
