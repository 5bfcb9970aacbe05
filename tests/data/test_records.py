"""The JSONL record format: reading, validation, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ofa.data.records import read_jsonl, validate_record
from ofa.errors import InputError


@pytest.fixture()
def image(tmp_path: Path) -> str:
    path = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path)
    return str(path)


def test_read_jsonl_resolves_images_and_filters(tmp_path, image):
    rows = [{"task": "caption", "image": "img.png", "caption": "a red square"},
            {"task": "vqa", "image": "img.png", "question": "what color?", "answer": "red",
             "id": "q7"},
            {"task": "summarize", "source": "long text", "summary": "short"}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    recs = read_jsonl(path)
    assert [r["task"] for r in recs] == ["caption", "vqa", "summarize"]
    assert recs[0]["image"] == image and recs[0]["id"] == "d-1"
    assert recs[1]["image"] == image and recs[1]["id"] == "q7"  # a shared image, an own id
    assert recs[2]["id"] == "d-3"
    assert [r["task"] for r in read_jsonl(path, ["vqa"])] == ["vqa"]
    with pytest.raises(InputError, match="unknown tasks"):
        read_jsonl(path, ["captioning"])


@pytest.mark.parametrize("record, message", [
    ({"task": "caption", "image": "x"}, "lacks caption"),
    ({"task": "detect", "image": "x"}, "'task' must be one of"),
    ({"task": "vqa", "image": "x", "question": "q"}, "lacks answers"),
    ({"task": "vqa", "image": "x", "question": "q", "answers": {"a": -1}}, "confidences"),
    ({"task": "ground", "image": "x", "text": "t", "box": [5, 5, 1, 1]}, "box"),
    ({"task": "ground", "image": "x", "text": "t", "box": [1, 2, 3]}, "box"),
    ({"task": "entail", "image": "x", "hypothesis": "h", "label": "true"}, "label must be"),
    ({"task": "caption", "image": "x", "caption": "c", "weight": -2}, "weight"),
    ({"task": "caption", "image": "x", "caption": ["", "b"]}, "caption must be"),
    ([1, 2], "JSON object"),
])
def test_validate_record_errors(record, message):
    with pytest.raises(InputError, match=message) as e:
        validate_record(record, "file.jsonl:7")
    assert "file.jsonl:7" in str(e.value)


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task": "summarize", "source": "a", "summary": "b"}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl(path)
