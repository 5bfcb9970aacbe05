"""Loading data pickles (such as the ``refs(unc).p`` files of the ``refer`` datasets) safely.

Unpickling can call any importable function, so a pickle downloaded from the web is code. The
files read here only hold plain data, and a pickle of plain containers never needs a global:
so every global (and every persistent id) is refused, which leaves nothing callable, and the
loaded object is then checked to hold only dicts, lists, tuples, strings, numbers, booleans and
None (sets and bytearrays need no global either, but are not plain data).

The ``refer`` pickles were written by Python 2, where text can be a byte string; it is read as
bytes and decoded as UTF-8 (Latin-1 when that fails), dictionary keys included.

Hostile bytes cannot make loading slow or large either: the unpickler's work is proportional
to the file (``ofa.safe_unpickle.BoundedUnpickler``), and the conversion visits each object once,
so shared references stay shared, while a reference cycle, nesting deeper than 100 levels or
more than 30 million values is refused with one clear error.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, NoReturn

from ..errors import InputError
from ..safe_unpickle import BoundedConverter, BoundedUnpickler

__all__ = ["load_plain_pickle", "loads_plain_pickle"]

_MAX_DEPTH = 100  # plain data files are shallow; deeper nesting is refused, not recursed into
# Values in all (each reference followed once): a backstop well above the annotation files
# read here, well below what would take minutes to convert.
_MAX_VALUES = 30_000_000


class _PlainUnpickler(BoundedUnpickler):
    """An unpickler that can build containers and scalars but can look up nothing.

    Being a :class:`BoundedUnpickler`, it also cannot call, hash or allocate more than the
    bytes it reads ask for (see ``ofa.safe_unpickle``).
    """

    error = InputError

    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def refuse(self, reason: str) -> NoReturn:
        raise InputError(f"{self.where}: {reason}")

    def find_class(self, module: str, name: str) -> Any:
        self.refuse(f"refusing to unpickle {module}.{name}: only plain data (dict, list, "
                    "tuple, str, int, float, bool, None) is allowed, and loading other objects "
                    "could run code")

    def persistent_load(self, pid: Any) -> Any:
        self.refuse("refusing a pickle with persistent ids: only plain data is allowed")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _PlainData(BoundedConverter):
    """Byte strings decoded; InputError if the pickle holds anything but plain data."""

    error = InputError
    max_depth = _MAX_DEPTH
    max_values = _MAX_VALUES

    def refuse(self, reason: str) -> NoReturn:
        raise InputError(f"{self.where}: pickle {reason}")

    def build(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, bytes):
            return _text(obj)
        if isinstance(obj, list):
            return self.convert_all(obj, depth)
        if isinstance(obj, tuple):
            return tuple(self.convert_all(obj, depth))
        if isinstance(obj, dict):
            keys, values = self.convert_all(obj, depth), self.convert_all(obj.values(), depth)
            return dict(zip(keys, values, strict=True))
        raise InputError(f"{self.where}: the pickle holds a {type(obj).__name__}; only plain "
                         "data (dict, list, tuple, str, int, float, bool, None) is allowed")


def loads_plain_pickle(data: bytes, where: str = "pickle") -> Any:
    """The plain data in pickle ``data``; ``where`` names its source in error messages."""
    try:
        obj = _PlainUnpickler(io.BytesIO(data), where).load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001  whatever else the bytes provoke, they are damaged
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise InputError(f"{where}: not a readable pickle ({type(e).__name__}"
                         f"{': ' + detail if detail else ''})") from None
    return _PlainData(where)(obj)


def load_plain_pickle(path: str | os.PathLike[str]) -> Any:
    """The plain data in the pickle file ``path`` (see the module docstring for what passes)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"pickle file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {p}: {e}") from None
    return loads_plain_pickle(data, str(p))
