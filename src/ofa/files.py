"""Writing files so that a reader, or a run killed midway, sees the old content or the new,
never half of either: write beside the target, then rename over it (atomic on one file
system)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["old_folder", "replace_folder", "replacing", "temporary_file", "write_atomic"]


def temporary_file(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (one name per process)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write; on success it replaces ``path``, on an error it is
    removed (a killed process leaves it: its name says so, see :func:`temporary_file`)."""
    tmp = temporary_file(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) all at once."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def old_folder(dst: Path) -> Path:
    """Where the previous ``dst`` waits while the new one is renamed into place."""
    return dst.with_name(f".{dst.name}.old-{os.getpid()}")


def replace_folder(src: Path, dst: Path) -> None:
    """Rename the folder ``src`` to ``dst``, replacing it. A kill between the two renames
    leaves ``dst`` missing and its previous content in :func:`old_folder` (the training run
    folder puts it back on its next start)."""
    old = old_folder(dst)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)
