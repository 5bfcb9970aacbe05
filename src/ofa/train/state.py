"""``checkpoint_last.pt`` as plain data, read without running code from the file.

Everything a checkpoint holds is tensors, dicts, lists, tuples, strings, numbers, booleans and
None: what ``torch.load(..., weights_only=True)`` accepts. A pickle can name any Python
callable, and a full unpickler calls it, so a file planted in a run folder would run its code
on ``--resume``. It is read like every other pickle the project reads
(:func:`ofa.safe_unpickle.load_pickled_checkpoint`: no code, time and memory bounded by the
file's size); a file that needs more than data is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from ..safe_unpickle import load_pickled_checkpoint

VERSION = 2  # 1: the numpy RNG state was pickled as numpy's own tuple with an array
REQUIRED = ("version", "step", "best", "model_config", "model", "optimizer", "scheduler", "rng")
_RESTART = "delete it to start the run over"


def numpy_rng_state() -> dict[str, Any]:
    """``np.random.get_state()`` as a tensor and plain numbers (its array is numpy's own)."""
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian)}


def set_numpy_rng_state(saved: dict[str, Any] | tuple) -> None:
    """Restore :func:`numpy_rng_state` (or a version-1 checkpoint's numpy tuple)."""
    if isinstance(saved, tuple):
        np.random.set_state(saved)
        return
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state((saved["algorithm"], keys, saved["pos"], saved["has_gauss"],
                         saved["cached_gaussian"]))


def read_training_state(path: Path) -> dict[str, Any]:
    """The dict :meth:`Trainer.save` wrote to ``path``, loaded without running code from it;
    a damaged file, or one that holds anything but data, is an :class:`InputError`."""
    try:
        state = load_pickled_checkpoint(path)
    except CheckpointError as e:  # refused (it could run code) or damaged: the message says
        raise InputError(f"cannot resume: {e}; {_RESTART}") from None
    missing = [k for k in REQUIRED if k not in state] if isinstance(state, dict) else REQUIRED
    if missing:
        raise InputError(f"{path} is not a training checkpoint of ofa (no "
                         f"{', '.join(missing)}); {_RESTART}")
    if not isinstance(state["version"], int) or state["version"] > VERSION:
        raise InputError(f"{path} was written by a newer version of ofa (checkpoint version "
                         f"{state['version']!r}); update ofa to resume it")
    return state
