"""OFA's text-to-image captions (coco_vqgan_*.tsv: uniq_id, image codes, caption) read through
``ofa.data.benchmarks.read_eval_data("imagine", ...)``, plus .txt / .jsonl caption lists."""

from __future__ import annotations

import json

import pytest

from ofa.data.benchmarks import read_eval_data
from ofa.data.benchmarks.imagegen import find_imagegen_file, read_imagegen_tsv
from ofa.errors import InputError

CODES = " ".join(str(i) for i in range(0, 8192, 8))  # 1024 codes, as the official rows


def _tsv(path, rows) -> str:
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_official_tsv_gives_id_and_caption(tmp_path):
    p = _tsv(tmp_path / "coco_vqgan_full_test.tsv",
             [("101", CODES, "a man riding a horse on the beach"),
              ("102", CODES, " two dogs play in the snow ")])
    data = read_eval_data("imagine", p)
    assert data.format == "coco-vqgan-tsv"
    assert list(data.records) == [
        {"task": "imagine", "id": "101", "text": "a man riding a horse on the beach"},
        {"task": "imagine", "id": "102", "text": "two dogs play in the snow"}]
    assert data.meta["reference_images"] is None
    # the official task name works too, and the codes come back on request
    assert read_eval_data("image_gen", p).records == data.records
    coded = read_imagegen_tsv(p, codes=True)
    assert coded[0]["codes"][:3] == [0, 8, 16] and len(coded[0]["codes"]) == 1024


def test_two_column_rows_bom_and_crlf(tmp_path):
    p = tmp_path / "captions.tsv"
    p.write_bytes("\ufeffa1\ta cat\r\n\r\na2\ta bird\r\n".encode())
    assert [(r["id"], r["text"]) for r in read_eval_data("imagine", p).records] == \
        [("a1", "a cat"), ("a2", "a bird")]
    with pytest.raises(InputError, match="no image codes"):
        read_imagegen_tsv(p, codes=True)


@pytest.mark.parametrize("rows, message", [
    ([("1", CODES, "a cat", "extra", "x")], r":1: found 5 tab-separated columns"),
    ([("1", "a cat", CODES)], r"column 2 must hold .*third column holds the codes"),
    ([("1", "12 x 3", "a cat")], r"column 2 must hold the image's VQGAN codes"),
    ([("1", CODES, "  ")], r":1: the caption column is empty"),
    ([("1", CODES, "a"), ("1", CODES, "b")], r"id '1' appears twice"),
])
def test_malformed_tsv_is_one_clear_error(tmp_path, rows, message):
    with pytest.raises(InputError, match=message):
        read_eval_data("imagine", _tsv(tmp_path / "coco_vqgan_dev.tsv", rows))


def test_folder_split_and_reference_images(tmp_path):
    _tsv(tmp_path / "coco_vqgan_full_test.tsv", [("1", CODES, "a cat")])
    _tsv(tmp_path / "coco_vqgan_dev.tsv", [("2", CODES, "a dog")])
    assert read_eval_data("imagine", tmp_path).records[0]["id"] == "1"  # default: test
    assert read_eval_data("imagine", tmp_path, split="val").records[0]["id"] == "2"
    with pytest.raises(InputError, match="no coco_vqgan_train.tsv.*found coco_vqgan_dev"):
        find_imagegen_file(tmp_path, "train")
    with pytest.raises(InputError, match="holds the dev split"):
        read_eval_data("imagine", tmp_path / "coco_vqgan_dev.tsv", split="test")
    images = tmp_path / "val2014"
    images.mkdir()
    data = read_eval_data("imagine", tmp_path, images=images)
    assert data.meta["reference_images"] == str(images)
    with pytest.raises(InputError, match="reference image folder not found"):
        read_eval_data("imagine", tmp_path, images=tmp_path / "nope")
    with pytest.raises(InputError, match="no annotations"):
        read_eval_data("imagine", tmp_path, annotations=tmp_path / "coco_vqgan_dev.tsv")


def test_caption_lists(tmp_path):
    txt = tmp_path / "prompts.txt"
    txt.write_text("a cat\n\n a red bus \n", encoding="utf-8")
    assert [(r["id"], r["text"]) for r in read_eval_data("imagine", txt).records] == \
        [("prompts-1", "a cat"), ("prompts-3", "a red bus")]
    jl = tmp_path / "prompts.jsonl"
    jl.write_text(json.dumps({"id": 7, "text": "a cat"}) + "\n"
                  + json.dumps({"caption": "a dog"}) + "\n", encoding="utf-8")
    assert [(r["id"], r["text"]) for r in read_eval_data("imagine", jl).records] == \
        [("7", "a cat"), ("prompts-2", "a dog")]
    jl.write_text(json.dumps({"task": "caption", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=":1: task 'caption'"):
        read_eval_data("imagine", jl)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no captions"):
        read_eval_data("imagine", empty)
    (tmp_path / "prompts.json").write_text("{}")
    with pytest.raises(InputError, match="cannot tell"):
        read_eval_data("imagine", tmp_path / "prompts.json")


def test_other_tasks_still_go_to_their_readers(tmp_path):
    with pytest.raises(InputError, match="unknown evaluation task"):
        read_eval_data("draw", tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_eval_data("caption", tmp_path / "nope.json")
