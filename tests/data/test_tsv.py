"""Readers for the official OFA TSV files: tiny files in the official layouts, built on the fly."""

from __future__ import annotations

import base64
import io
import pickle
import random
from pathlib import Path

import pytest
from PIL import Image

from ofa.data import tsv as tsv_mod
from ofa.data.records import validate_record
from ofa.data.tsv import (
    TSV_LAYOUTS,
    TSV_TASKS,
    TSVFile,
    TSVRecords,
    decode_base64_image,
    parse_box,
    parse_vqa_answers,
    read_tsv,
)
from ofa.errors import InputError
from ofa.preprocess import load_image


def png_bytes(color: tuple[int, ...], size: tuple[int, int] = (3, 2), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def b64(color: tuple[int, ...], urlsafe: bool = False, **kw) -> str:
    data = png_bytes(color, **kw)
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def write(tmp_path: Path, name: str, rows: list[list[str]], newline: str = "\n",
          final_newline: bool = True) -> Path:
    path = tmp_path / name
    text = newline.join("\t".join(r) for r in rows) + (newline if final_newline else "")
    path.write_bytes(text.encode("utf-8"))
    return path


# Rows in each task's official column order (see TSV_LAYOUTS / the README examples).
OFFICIAL_ROWS: dict[str, list[list[str]]] = {
    "caption": [
        ["162365", "12455", "the sun sets over the trees beyond some docks.",
         "sky&&water&&dock&&pole", b64(RED)],
        ["162366", "12456", "a dog on a couch && a brown dog sleeping&&a pet indoors",
         "dog&&couch", b64(GREEN)],
    ],
    "vqa": [
        ["79459", "79459", "is this person wearing shorts?", "0.6|!+no&&1.0|!+yes",
         "house&&short&&sky", b64(RED)],
        ["79460", "79459", "what color is the sky", "1.0|!+blue", "", b64(BLUE)],
    ],
    "ground": [
        ["79_1", "237367", "A woman in a white blouse holding a glass of wine.",
         "230.79,121.75,423.66,463.06", b64(RED)],
        ["79_2", "237367", "left man", "0,1,2,3", b64(GREEN)],
    ],
    "entail": [
        ["252244149.jpg#1r1n", "252244149", b64(RED),
         "a man in pink and gold is chewing on a wooden toothpick.",
         "a man in pink is chewing a toothpick on the subway.", "neutral "],
        ["1.jpg#0r1e", "1", b64(GREEN), "a man is outside", "a man in a park", "entailment"],
        ["1.jpg#0r1c", "1", b64(BLUE), "a woman is sleeping", "", "contradiction"],
    ],
    "classify": [
        [b64(RED, urlsafe=True), "769", "rugby ball"],
        [b64(BLUE, urlsafe=True).rstrip("="), "1", "tench"],
    ],
    "summarize": [
        ["factory orders for manufactured goods rose #.# percent in september",
         "us september factory orders up #.# percent"],
        ["the dollar fell against the yen", "dollar falls"],
    ],
    "imagine": [
        ["1", " ".join(str(i * 7 % 8192) for i in range(1024)), "a red bus on a street"],
        ["2", "0 8191 5 9", "two dogs"],
    ],
    "ocr": [
        ["0", b64(RED), "北京欢迎你"],
        ["1", b64(GREEN), "Welcome 2024"],
    ],
}


def official_file(tmp_path: Path, task: str, newline: str = "\n") -> Path:
    return write(tmp_path, f"{task}_test.tsv", OFFICIAL_ROWS[task], newline)


def plain(record: dict) -> dict:
    """The record with its image replaced by comparable (size, pixel bytes)."""
    out = dict(record)
    if isinstance(out.get("image"), Image.Image):
        out["image"] = (out["image"].size, out["image"].tobytes())
    return out


def pixel(record: dict) -> tuple[int, int, int]:
    image = record["image"]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (3, 2)
    return image.getpixel((0, 0))


# ---------------------------------------------------------------------- base64 images


def test_decode_base64_image_alphabets_padding_and_modes():
    raw = png_bytes(RED)
    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
                 base64.b64encode(raw).decode().rstrip("="), base64.b64encode(raw),
                 " " + base64.b64encode(raw).decode() + "\r\n",
                 "data:image/png;base64," + base64.b64encode(raw).decode()):
        image = decode_base64_image(text)
        assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((2, 1)) == RED
    for color, mode in (((10, 20, 30, 0), "RGBA"), ((77,), "L"), ((3,), "P")):
        image = decode_base64_image(b64(color, mode=mode))
        assert image.mode == "RGB" and image.size == (3, 2)
    assert decode_base64_image(b64((77,), mode="L")).getpixel((0, 0)) == (77, 77, 77)
    assert decode_base64_image(b64((10, 20, 30, 0), mode="RGBA")).getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("data, message", [
    ("", "empty"),
    ("@@not base64@@", "base64"),
    ("abcde", "base64"),
    (base64.b64encode(b"just some text, not an image").decode(), "not a readable image"),
    (base64.b64encode(png_bytes(RED)[:50]).decode(), "corrupt"),
    (base64.b64encode(png_bytes(RED)[:20]).decode(), "corrupt"),
    ("é".encode(), "base64"),
])
def test_decode_base64_image_errors(data, message):
    with pytest.raises(InputError, match=message):
        decode_base64_image(data)


def test_decode_base64_image_guards_decompression_bombs(monkeypatch):
    # the pixel limit of every image loader, read from the header before decoding
    monkeypatch.setenv("OFA_MAX_PIXELS", "10")
    for size in ((4, 4), (8, 8)):
        with pytest.raises(InputError, match="above the limit of 10"):
            decode_base64_image(b64(RED, size=size))
    monkeypatch.setenv("OFA_MAX_PIXELS", "64")  # raised, as OFA_MAX_PIXELS allows
    assert decode_base64_image(b64(RED, size=(8, 8))).size == (8, 8)


# ---------------------------------------------------------------------- field parsers


def test_parse_vqa_answers_and_box():
    assert parse_vqa_answers("0.6|!+no&&1.0|!+yes") == {"no": 0.6, "yes": 1.0}
    assert parse_vqa_answers("0.3|!+no&&1|!+no&&") == {"no": 1.0}  # last wins, as officially
    assert parse_box(" 1.5,2,30,40.25 ") == [1.5, 2.0, 30.0, 40.25]
    assert all(isinstance(v, float) for v in parse_box("1,2,3,4"))


# ---------------------------------------------------------------------- each task


def test_caption_single_and_multi_reference(tmp_path):
    records = read_tsv(official_file(tmp_path, "caption"), "caption")
    assert len(records) == 2 and records.task == "caption"
    first, second = records[0], records[1]
    assert {k: v for k, v in first.items() if k != "image"} == {
        "task": "caption", "id": "162365",
        "caption": "the sun sets over the trees beyond some docks."}
    assert pixel(first) == RED
    assert second["caption"] == ["a dog on a couch", "a brown dog sleeping", "a pet indoors"]
    assert pixel(second) == GREEN and second["id"] == "162366"
    # The stage-2 / evaluation scripts select 1,4,2: the COCO image id becomes the id.
    by_image = read_tsv(official_file(tmp_path, "caption"), "caption", selected_cols=(1, 4, 2))
    assert by_image[0]["id"] == "12455" and by_image[1]["caption"] == second["caption"]


def test_vqa_answers_confidences_and_objects(tmp_path):
    records = read_tsv(official_file(tmp_path, "vqa"), "vqa")
    first, second = records[0], records[1]
    assert first["task"] == "vqa" and first["id"] == "79459"
    assert first["question"] == "is this person wearing shorts?"
    assert first["answers"] == {"no": 0.6, "yes": 1.0}
    assert all(isinstance(c, float) for c in first["answers"].values())
    assert first["objects"] == ["house", "short", "sky"] and pixel(first) == RED
    assert second["answers"] == {"blue": 1.0} and "objects" not in second  # empty column
    assert pixel(second) == BLUE
    # The objects column is optional: four selected columns leave it out.
    no_objects = read_tsv(official_file(tmp_path, "vqa"), "vqa", selected_cols=[0, 5, 2, 3])
    assert "objects" not in no_objects[0] and no_objects[0]["answers"] == first["answers"]


def test_ground_box_floats(tmp_path):
    records = read_tsv(official_file(tmp_path, "ground"), "ground")
    first = records[0]
    assert first["task"] == "ground" and first["id"] == "79_1"
    assert first["text"] == "A woman in a white blouse holding a glass of wine."
    assert first["box"] == [230.79, 121.75, 423.66, 463.06]
    assert all(type(v) is float for v in first["box"]) and pixel(first) == RED
    assert records[1]["box"] == [0.0, 1.0, 2.0, 3.0] and pixel(records[1]) == GREEN


def test_entail_labels_premise_and_image_column(tmp_path):
    records = read_tsv(official_file(tmp_path, "entail"), "snli_ve")  # official name works
    assert records.task == "entail"
    neutral, entailment, contradiction = records[0], records[1], records[2]
    assert neutral["id"] == "252244149.jpg#1r1n" and neutral["label"] == "neutral"
    assert neutral["hypothesis"] == "a man in pink and gold is chewing on a wooden toothpick."
    assert neutral["premise"] == "a man in pink is chewing a toothpick on the subway."
    assert entailment["label"] == "entailment" and entailment["premise"] == "a man in a park"
    assert contradiction["label"] == "contradiction" and "premise" not in contradiction
    assert [pixel(r) for r in records] == [RED, GREEN, BLUE]  # image is column 2 here


def test_classify_urlsafe_images_and_ids(tmp_path):
    path = official_file(tmp_path, "classify")
    records = read_tsv(path, "classify")
    assert records[0] == {**records[0], "task": "classify", "id": f"{path.stem}-1",
                          "label": "rugby ball"}
    assert pixel(records[0]) == RED
    assert records[1]["label"] == "tench" and records[1]["id"] == f"{path.stem}-2"
    assert pixel(records[1]) == BLUE


def test_summarize(tmp_path):
    path = official_file(tmp_path, "summarize")
    records = read_tsv(path, "gigaword")
    assert records[0] == {
        "task": "summarize", "id": f"{path.stem}-1",
        "source": "factory orders for manufactured goods rose #.# percent in september",
        "summary": "us september factory orders up #.# percent"}
    assert records[1]["summary"] == "dollar falls"


@pytest.mark.parametrize("task", TSV_TASKS)
def test_records_match_the_project_format(tmp_path, task):
    records = read_tsv(official_file(tmp_path, task), task)
    for n, record in enumerate(records, 1):
        validate_record(record, f"row {n}")
    lazy = read_tsv(official_file(tmp_path, task), task, decode_images=False)
    for decoded, raw in zip(records, lazy, strict=True):
        assert set(decoded) == set(raw)
        if "image" in raw:
            assert isinstance(raw["image"], bytes)
            assert plain({"image": load_image(raw["image"])}) == {
                "image": plain(decoded)["image"]}


def test_image_generation_rows(tmp_path):
    rows = read_tsv(official_file(tmp_path, "imagine"), "image_gen")  # the official task name
    assert rows[0]["codes"] == [i * 7 % 8192 for i in range(1024)]
    assert rows[1] == {"task": "imagine", "id": "2", "text": "two dogs", "codes": [0, 8191, 5, 9]}


def test_image_generation_rows_need_integer_codes(tmp_path):
    bad = write(tmp_path, "coco_vqgan_train.tsv", [["1", "12 x 3", "a cat"]])
    with pytest.raises(InputError, match=r"coco_vqgan_train.tsv:1: .*integers separated"):
        read_tsv(bad, "imagine")[0]
    not_square = write(tmp_path, "coco_vqgan_dev.tsv", [["1", "1 2 3", "a cat"]])
    with pytest.raises(InputError, match=r"coco_vqgan_dev.tsv:1: codes must fill a square"):
        read_tsv(not_square, "imagine")[0]
    without_codes = write(tmp_path, "coco_vqgan_test.tsv", [["1", "a cat"]])
    assert read_tsv(without_codes, "imagine", "0,1")[0] == {
        "task": "imagine", "id": "1", "text": "a cat"}


def test_layouts_document_the_defaults():
    assert set(TSV_LAYOUTS) == set(TSV_TASKS)
    for task, layout in TSV_LAYOUTS.items():
        assert len(layout.default_cols) == len(layout.fields)
        assert max(layout.default_cols) < len(layout.columns)
        assert len(OFFICIAL_ROWS[task][0]) == len(layout.columns)


# ---------------------------------------------------------------------- access patterns


@pytest.mark.parametrize("task", TSV_TASKS)
def test_crlf_files_read_like_lf_files(tmp_path, task):
    lf = read_tsv(write(tmp_path, "lf.tsv", OFFICIAL_ROWS[task]), task)
    crlf = read_tsv(write(tmp_path, "crlf.tsv", OFFICIAL_ROWS[task], "\r\n"), task)
    assert len(crlf) == len(lf)
    for a, b in zip(lf, crlf, strict=True):
        a, b = plain(a), plain(b)
        if "id" in a and task in ("classify", "summarize"):
            a.pop("id"), b.pop("id")  # ids name the file
        assert a == b


def test_random_access_is_order_independent(tmp_path):
    rows = [[str(i), str(i), f"caption {i}", "", b64((i, 2 * i, 3 * i))] for i in range(40)]
    records = read_tsv(write(tmp_path, "many.tsv", rows), "caption")
    forward = [plain(r) for r in records]
    order = list(range(40))
    random.Random(0).shuffle(order)
    assert [plain(records[i]) for i in order] == [forward[i] for i in order]
    assert [plain(records[i]) for i in reversed(range(40))] == forward[::-1]
    assert plain(records[-1]) == forward[-1] and [plain(r) for r in records[3:6]] == forward[3:6]
    assert records[7]["image"].getpixel((0, 0)) == (7, 14, 21)
    with pytest.raises(IndexError):
        records[40]
    with pytest.raises(IndexError):
        records[-41]


def test_index_scan_across_chunk_boundaries(tmp_path, monkeypatch):
    rows = [[f"s{i}" * (i % 5 + 1), f"t{i}"] for i in range(50)]
    expected = TSVFile(write(tmp_path, "a.tsv", rows))
    monkeypatch.setattr(tsv_mod, "_CHUNK_BYTES", 7)  # lines straddle many chunk ends
    small = TSVFile(write(tmp_path, "b.tsv", rows))
    assert len(small) == len(expected) == 50
    assert [small[i] for i in range(50)] == [expected[i] for i in range(50)] == rows


def test_blank_lines_missing_final_newline_and_bom(tmp_path):
    path = tmp_path / "odd.tsv"
    path.write_bytes("\ufeffa\tb\n\n1\t2\r\n\r\nx\ty".encode())
    tsv = TSVFile(path)
    assert len(tsv) == 3
    assert [tsv[i] for i in range(3)] == [["a", "b"], ["1", "2"], ["x", "y"]]
    assert [tsv.line_number(i) for i in range(3)] == [1, 3, 5]
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    assert len(TSVFile(empty)) == 0 and len(read_tsv(empty, "summarize")) == 0


def test_selected_cols_reorder_columns(tmp_path):
    path = write(tmp_path, "cols.tsv", [["a", "b", "c", "d"], ["e", "f", "g", "h"]])
    assert TSVFile(path)[1] == ["e", "f", "g", "h"]
    assert TSVFile(path, selected_cols=[2, 0])[0] == ["c", "a"]
    assert TSVFile(path, selected_cols="3,3,1")[1] == ["h", "h", "f"]
    # A caption file in a custom order: image, caption, id.
    custom = write(tmp_path, "custom.tsv", [[b64(BLUE), "a cat&&a kitten", "id-9"]])
    record = read_tsv(custom, "caption", selected_cols=(2, 0, 1))[0]
    assert record["id"] == "id-9" and record["caption"] == ["a cat", "a kitten"]
    assert pixel(record) == BLUE


def test_tsvfile_pickles_and_reopens(tmp_path):
    path = official_file(tmp_path, "ground")
    tsv = TSVFile(path, selected_cols=(0, 2, 3))
    first = tsv[0]  # the handle is open now; it must not be pickled
    copy = pickle.loads(pickle.dumps(tsv))
    assert copy._fh is None and len(copy) == len(tsv)
    assert copy[1] == tsv[1] and copy[0] == first
    records = read_tsv(path, "ground")
    records[0]
    clone = pickle.loads(pickle.dumps(records))
    assert [plain(r) for r in clone] == [plain(r) for r in records]


def test_tsvfile_reopens_in_a_new_process(tmp_path, monkeypatch):
    tsv = TSVFile(official_file(tmp_path, "summarize"))
    tsv[0]
    parent_handle = tsv._fh
    monkeypatch.setattr(tsv_mod.os, "getpid", lambda: -1)  # as seen from a forked worker
    assert tsv[1] == OFFICIAL_ROWS["summarize"][1]
    assert tsv._fh is not parent_handle and tsv._pid == -1
    assert not parent_handle.closed  # the parent's handle is left alone


def test_dataloader_workers(tmp_path):
    torch = pytest.importorskip("torch")
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    tsv = TSVFile(official_file(tmp_path, "summarize"))
    tsv[0]
    loader = torch.utils.data.DataLoader(tsv, batch_size=None, num_workers=2,
                                         collate_fn=list, multiprocessing_context="fork")
    assert sorted(tuple(r) for r in loader) == sorted(map(tuple, OFFICIAL_ROWS["summarize"]))


# ---------------------------------------------------------------------- errors


def assert_error(func, path: Path, line: int | None, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        func()
    message = str(info.value)
    assert path.name in message, message
    if line is not None:
        assert f"{path.name}:{line}:" in message, message
    for needle in needles:
        assert needle in message, message
    return message


def with_bad_row(tmp_path: Path, task: str, row: list[str], name: str = "bad.tsv") -> Path:
    return write(tmp_path, name, [OFFICIAL_ROWS[task][0], row])


def test_wrong_column_counts(tmp_path):
    good = OFFICIAL_ROWS["caption"][0]
    path = with_bad_row(tmp_path, "caption", good[:4])
    records = read_tsv(path, "caption")
    assert records[0]["id"] == "162365"  # only the bad line fails, when it is read
    assert_error(lambda: records[1], path, 2, "found 4", "expected 5")
    path = with_bad_row(tmp_path, "caption", [*good, "extra"], "extra.tsv")
    assert_error(lambda: read_tsv(path, "caption")[1], path, 2, "found 6", "expected 5")
    path = write(tmp_path, "short.tsv", [["a", "b"]])
    assert_error(lambda: read_tsv(path, "caption", selected_cols=(0, 4, 1))[0], path, 1,
                 "found 2", "at least 5")
    assert_error(lambda: TSVFile(path, selected_cols=[3])[0], path, 1, "at least 4")


def test_bad_selected_cols_and_task(tmp_path):
    path = official_file(tmp_path, "vqa")
    assert_error(lambda: read_tsv(path, "vqa", selected_cols=(0, 5, 2)), path, None,
                 "must pick 4 or 5 columns", "question")
    assert_error(lambda: read_tsv(path, "entail", selected_cols=(0, 5, 2, 3)), path, None,
                 "must pick 5 columns")
    assert_error(lambda: read_tsv(path, "vqa", selected_cols=(0, -1, 2, 3)), path, None,
                 "selected_cols")
    assert_error(lambda: read_tsv(path, "vqa", selected_cols="0,x"), path, None, "'0,4,2'")
    assert_error(lambda: read_tsv(path, "detect"), path, None, "unknown TSV task 'detect'",
                 "caption")
    assert_error(lambda: TSVRecords(TSVFile(path), "nope"), path, None, "unknown TSV task")
    missing = tmp_path / "missing.tsv"
    assert_error(lambda: read_tsv(missing, "vqa"), missing, None, "not found")


@pytest.mark.parametrize("box, needle", [
    ("1,2,3", "4 comma-separated numbers"),
    ("a,b,c,d", "4 comma-separated numbers"),
    ("", "4 comma-separated numbers"),
    ("1 2 3 4", "4 comma-separated numbers"),
    ("5,5,1,1", "x0 <= x1"),
    ("nan,0,1,1", "finite"),
])
def test_bad_boxes(tmp_path, box, needle):
    path = with_bad_row(tmp_path, "ground", ["7", "8", "a man", box, b64(RED)])
    assert_error(lambda: read_tsv(path, "ground")[1], path, 2, needle)


@pytest.mark.parametrize("ref, needle", [
    ("yes", "'confidence|!+answer'"),
    ("1.0|yes", "'confidence|!+answer'"),
    ("high|!+yes", "is not a number"),
    ("-1|!+yes", ">= 0"),
    ("inf|!+yes", ">= 0"),
    ("0.5|!+  ", "empty answer"),
    ("", "answers column is empty"),
    ("1.0|!+yes&&no", "'confidence|!+answer'"),
])
def test_bad_vqa_answers(tmp_path, ref, needle):
    path = with_bad_row(tmp_path, "vqa", ["1", "2", "what?", ref, "", b64(RED)])
    assert_error(lambda: read_tsv(path, "vqa")[1], path, 2, needle)


@pytest.mark.parametrize("task, row, needle", [
    ("entail", ["1", "2", b64(RED), "a man", "a person", "maybe"], "must be one of"),
    ("entail", ["1", "2", b64(RED), " ", "a person", "neutral"], "hypothesis column is empty"),
    ("caption", ["1", "2", " && ", "", b64(RED)], "caption column is empty"),
    ("caption", ["1", "2", "a cat", "", "%%%%"], "not valid base64"),
    ("caption", ["1", "2", "a cat", "", base64.b64encode(b"text").decode()],
     "not a readable image"),
    ("vqa", ["1", "2", "", "1.0|!+yes", "", b64(RED)], "question column is empty"),
    ("ground", ["1", "2", "", "0,0,1,1", b64(RED)], "referring expression column is empty"),
    ("classify", [b64(RED, urlsafe=True), "1", ""], "class name column is empty"),
    ("classify", ["", "1", "tench"], "image column is empty"),
    ("summarize", ["an article", " "], "summary column is empty"),
])
def test_bad_fields(tmp_path, task, row, needle):
    path = with_bad_row(tmp_path, task, row)
    assert_error(lambda: read_tsv(path, task)[1], path, 2, needle)


def test_error_line_numbers_count_blank_lines_and_bad_utf8(tmp_path):
    path = tmp_path / "gaps.tsv"
    path.write_bytes(b"a\tb\n\n\nsource only\n")
    assert_error(lambda: read_tsv(path, "summarize")[1], path, 4, "found 1", "expected 2")
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(b"a\tb\ncaf\xe9\tx\n")
    assert_error(lambda: read_tsv(bad, "summarize")[1], bad, 2, "UTF-8")


def test_file_changed_after_indexing(tmp_path):
    path = official_file(tmp_path, "summarize")
    records = read_tsv(path, "summarize")
    with path.open("ab") as f:
        f.write(b"new\tline\n")
    assert_error(lambda: records[0], path, None, "changed after it was indexed")
