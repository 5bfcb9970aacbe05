"""Data: what records are and how they are read (``records``, ``tsv``), the published
evaluation sets (``benchmarks``), lists of answers and class names (``answer_lists``), safe
pickles (``plain_pickle``), and ShapesWorld (``shapes``), a deterministic synthetic multitask
dataset for offline training. The ShapesWorld names below load its renderer on first use
only, so importing a reader never does."""

from __future__ import annotations

import importlib
from typing import Any

_SHAPES_NAMES = ("BACKGROUNDS", "COLORS", "SHAPES", "SIZES", "VQA_ANSWERS", "Scene", "Shape",
                 "ShapesWorld")
__all__ = list(_SHAPES_NAMES)


def __getattr__(name: str) -> Any:
    if name in _SHAPES_NAMES:
        return getattr(importlib.import_module(".shapes", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
