"""Fixtures shared by the featurization and batching tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ofa.tokenizer import OFATokenizer


@pytest.fixture(scope="module")
def tokenizer(bpe_dir: Path) -> OFATokenizer:
    return OFATokenizer.from_dir(bpe_dir)


@pytest.fixture()
def image(tmp_path: Path) -> str:
    path = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path)
    return str(path)
