"""Loading data pickles (such as the ``refs(unc).p`` files of the ``refer`` datasets) safely.

Unpickling can call any importable function, so a pickle downloaded from the web is code. The
files read here only hold plain data, and a pickle of plain containers never needs a global:
so every global (and every persistent id) is refused, which leaves nothing callable, and the
loaded object is then checked to hold only dicts, lists, tuples, strings, numbers, booleans and
None (sets and bytearrays need no global either, but are not plain data).

The ``refer`` pickles were written by Python 2, where text can be a byte string; it is read as
bytes and decoded as UTF-8 (Latin-1 when that fails), dictionary keys included.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["load_plain_pickle", "loads_plain_pickle"]

_MAX_DEPTH = 100  # plain data files are shallow; deeper nesting is refused, not recursed into


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that can build containers and scalars but can look up nothing."""

    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        raise InputError(f"{self.where}: refusing to unpickle {module}.{name}: only plain data "
                         "(dict, list, tuple, str, int, float, bool, None) is allowed, and "
                         "loading other objects could run code")

    def persistent_load(self, pid: Any) -> Any:
        raise InputError(f"{self.where}: refusing a pickle with persistent ids: only plain data "
                         "is allowed")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _plain(obj: Any, where: str, depth: int = 0) -> Any:
    """``obj`` with byte strings decoded; InputError if it holds anything but plain data."""
    if depth > _MAX_DEPTH:
        raise InputError(f"{where}: pickle nests deeper than {_MAX_DEPTH} levels")
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, bytes):
        return _text(obj)
    if isinstance(obj, list):
        return [_plain(v, where, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v, where, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return {_plain(k, where, depth + 1): _plain(v, where, depth + 1) for k, v in obj.items()}
    raise InputError(f"{where}: the pickle holds a {type(obj).__name__}; only plain data "
                     "(dict, list, tuple, str, int, float, bool, None) is allowed")


def loads_plain_pickle(data: bytes, where: str = "pickle") -> Any:
    """The plain data in pickle ``data``; ``where`` names its source in error messages."""
    try:
        obj = _PlainUnpickler(io.BytesIO(data), where).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeDecodeError, OverflowError) as e:
        raise InputError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None
    return _plain(obj, where)


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
