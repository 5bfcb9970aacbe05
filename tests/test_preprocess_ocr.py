"""OFA-OCR preprocessing against ModelScope's own (../shared/oracle/cn/cases/ocr_preprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ofa.preprocess_ocr import ocr_resize


@pytest.fixture(scope="module")
def cases(shared_dir):
    folder = shared_dir / "oracle" / "cn" / "cases"
    if not (folder / "ocr_preprocess.safetensors").is_file():
        pytest.skip("OCR preprocessing fixtures missing")
    from safetensors.numpy import load_file

    spec = json.loads((folder / "ocr_preprocess.json").read_text(encoding="utf-8"))
    return spec["items"], load_file(folder / "ocr_preprocess.safetensors")


def test_every_fixture_is_reproduced_exactly(cases):
    items, tensors = cases
    assert len(items) == 9
    for j, item in enumerate(items):
        out = ocr_resize(Image.fromarray(tensors[f"orig_{j}"]), item["size_model"],
                         document=bool(item.get("is_document")))
        assert np.array_equal(np.asarray(out), tensors[f"out_{j}"]), item["name"]


def test_shapes_and_padding():
    line = Image.new("RGB", (320, 82), (10, 20, 30))
    line.paste((200, 0, 0), (0, 0, 320, 1))  # the top row: edge padding repeats it upwards
    out = np.asarray(ocr_resize(line, 480))
    assert out.shape == (480, 480, 3)
    assert (out[0] == out[179]).all() and (out[0, 0] != (10, 20, 30)).any()  # 122 px tall
    tall = np.asarray(ocr_resize(Image.new("L", (10, 400), 128), 480))
    assert tall.shape == (480, 480, 3) and (tall == 128).all()
