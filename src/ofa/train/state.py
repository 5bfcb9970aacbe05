"""``checkpoint_last.pt`` as plain data, read without running code from the file.

Everything a checkpoint holds is tensors, dicts, lists, tuples, strings, numbers, booleans and
None: what ``torch.load(..., weights_only=True)`` accepts. A pickle can name any Python
callable, and a full unpickler calls it, so a file planted in a run folder would run its code
on ``--resume``; a file that needs more than that is refused instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

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


def _legacy_numpy_classes() -> list[Any]:
    """The numpy data classes a version-1 checkpoint pickled its RNG state's uint32 array
    with, under both module names numpy has used (1.x and 2.x): they only rebuild data."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [(_reconstruct, f"numpy.{core}.multiarray._reconstruct") for core in ("core", "_core")
            ] + [np.ndarray, np.dtype, type(np.dtype(np.uint32))]  # the key array's dtype


def _weights_only_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        if safe_globals is None:
            raise
    with safe_globals(_legacy_numpy_classes()):  # a version-1 checkpoint
        return torch.load(path, map_location="cpu", weights_only=True)


def read_training_state(path: Path) -> dict[str, Any]:
    """The dict :meth:`Trainer.save` wrote to ``path``, loaded without running code from it;
    a damaged file, or one that holds anything but data, is an :class:`InputError`."""
    try:
        state = _weights_only_load(path)
    except pickle.UnpicklingError:
        raise InputError(f"refusing to resume from {path}: it holds objects other than "
                         "tensors and plain data, which this program never writes and which "
                         f"could run code when loaded; {_RESTART}") from None
    except Exception as e:  # noqa: BLE001  torch reports a torn zip or pickle in many ways
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
        raise InputError(f"{path} is damaged or not a training checkpoint ({reason}); "
                         f"{_RESTART}") from None
    missing = [k for k in REQUIRED if k not in state] if isinstance(state, dict) else REQUIRED
    if missing:
        raise InputError(f"{path} is not a training checkpoint of ofa (no "
                         f"{', '.join(missing)}); {_RESTART}")
    if not isinstance(state["version"], int) or state["version"] > VERSION:
        raise InputError(f"{path} was written by a newer version of ofa (checkpoint version "
                         f"{state['version']!r}); update ofa to resume it")
    return state
