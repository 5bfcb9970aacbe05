"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ofa.data.shapes import ShapesWorld


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A tiny ShapesWorld folder: 24 training and 4 validation scenes of 32 px."""
    out = tmp_path_factory.mktemp("shapes")
    ShapesWorld(seed=3, image_size=32, max_shapes=2).write(out, {"train": 24, "val": 4},
                                                           progress=False)
    return out
