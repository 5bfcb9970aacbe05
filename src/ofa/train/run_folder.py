"""The files of a run folder: the logs, and the temporary names of its interrupted writes.

A run can be killed at any moment (a crash, a preemption). Whatever it leaves behind, the next
start puts the folder back in the state of its last checkpoint, so that a killed-and-resumed
run writes the same logs, line for line, as one that was never interrupted:

- log lines of updates after the checkpoint are dropped (they will be written again), and so
  is a line torn by a kill mid-write;
- without a checkpoint to resume from, the run starts over, and so do its logs;
- temporary files and folders of interrupted writes are removed, and a model folder caught
  halfway through its replacement is put back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..files import replace_folder, temporary_file, write_atomic

__all__ = ["LOGS", "MODEL_FOLDERS", "TRAIN_LOG", "VALID_LOG", "clean_interrupted_writes",
           "new_folder", "prepare", "replace_folder", "temporary_file", "trim_log",
           "write_atomic"]

TRAIN_LOG = "train_log.jsonl"
VALID_LOG = "valid_log.jsonl"
LOGS = (TRAIN_LOG, VALID_LOG)
MODEL_FOLDERS = ("best", "final")  # what Trainer.export writes

# Every temporary name this package gives a file or folder in a run folder (see the functions
# below, and save_native's mkdtemp(prefix=".<folder>.") inside an export's ".new" folder).
# The names are precise so that nothing a user keeps in the folder is ever touched.
_TEMPORARY = re.compile(
    r"\.(?:checkpoint_last\.pt|train_log\.jsonl|valid_log\.jsonl)\.tmp-\d+"
    r"|\.(?:best|final)\.new-\d+(?:\.[a-z0-9_]+)?"
    r"|\.(?:best|final)\.old-\d+")
_OLD_FOLDER = re.compile(r"\.(best|final)\.old-\d+")


def new_folder(out: Path, folder: str) -> Path:
    """Where the model folder ``out/folder`` is written before it replaces the old one."""
    return out / f".{folder}.new-{os.getpid()}"


def clean_interrupted_writes(out: Path) -> list[str]:
    """Remove the temporary files and folders that killed writes left in ``out`` (only the
    names this package gives them); returns the names removed or put back."""
    if not out.is_dir():
        return []
    touched = []
    for entry in sorted(out.iterdir()):
        if not _TEMPORARY.fullmatch(entry.name):
            continue
        old = _OLD_FOLDER.fullmatch(entry.name)
        if old and entry.is_dir() and not (out / old.group(1)).exists():
            # killed between the two renames of replace_folder: the previous folder is whole
            os.replace(entry, out / old.group(1))
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        touched.append(entry.name)
    return touched


def _log_step(line: str) -> int | None:
    """The update a log line belongs to, or None for a line that is torn or not a record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def trim_log(path: Path, last_step: int) -> None:
    """Keep the whole lines of ``path`` for updates up to ``last_step`` (the checkpoint's):
    later updates will be logged again, and a torn line cannot be read."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [ln for ln in lines if (step := _log_step(ln)) is not None and step <= last_step]
    write_atomic(path, "".join(ln + "\n" for ln in kept))


def prepare(out: Path, resumed_step: int | None) -> None:
    """Put ``out`` in the state of the checkpoint a run starts from (``resumed_step``), or of
    a fresh start (None): no temporary files, and logs that end where the run begins."""
    clean_interrupted_writes(out)
    for name in LOGS:
        if resumed_step is None:  # a run killed before its first checkpoint starts over
            (out / name).unlink(missing_ok=True)
        else:
            trim_log(out / name, resumed_step)
