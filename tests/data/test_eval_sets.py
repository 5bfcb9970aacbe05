"""Evaluation-set readers: tiny datasets in each public layout, built on the fly, read back to
exact records through :func:`ofa.data.benchmarks.read_eval_data`."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
from pathlib import Path

import pytest
from PIL import Image

from ofa.data.benchmarks.common import check_file_split, split_words
from ofa.data.benchmarks.imagenet import display_name, read_class_names
from ofa.data.benchmarks.sets import EvalData, read_eval_data, resolve_task
from ofa.data.benchmarks.vqav2 import answer_scores, vqa_submission, write_vqa_submission
from ofa.data.records import validate_record
from ofa.errors import InputError


def make_image(path: Path, color=(200, 30, 30), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), color).save(path, format=fmt or ("PNG" if path.suffix.lower() ==
                                                                ".png" else "JPEG"))
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def b64_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def coco_name(split: str, image_id: int) -> str:
    return f"COCO_{split}_{image_id:012d}.jpg"


# ---------------------------------------------------------------------- tasks and splits


def test_task_aliases():
    assert resolve_task("refcoco+") == ("ground", "refcoco+")
    assert resolve_task("refcocog") == ("ground", "refcocog")
    assert resolve_task("snli_ve") == ("entail", None)
    assert resolve_task("imagenet") == ("classify", None)
    assert resolve_task("gigaword") == ("summarize", None)
    assert resolve_task("VQA") == ("vqa", None)
    with pytest.raises(InputError, match="unknown evaluation task 'detect'"):
        resolve_task("detect")


def test_split_words_and_file_split_check(tmp_path):
    assert split_words("v2_OpenEnded_mscoco_test-dev2015_questions.json") == {"test-dev"}
    assert split_words("refcoco_testA.tsv") == {"testa"}
    assert split_words("coco_karpathy_val_gt.json") == {"val"}
    assert split_words("input.txt") == set()
    check_file_split(tmp_path / "snli_ve_dev.jsonl", "val")  # dev and val are one split
    check_file_split(tmp_path / "input.txt", "test")  # a name without a split is accepted
    with pytest.raises(InputError, match="holds the val split .* not 'test'"):
        check_file_split(tmp_path / "caption_val.tsv", "test")


def test_missing_data_and_wrong_options(tmp_path):
    with pytest.raises(InputError, match="evaluation data not found: .*nope.json"):
        read_eval_data("caption", tmp_path / "nope.json")
    src = write_lines(tmp_path / "test.src.txt", ["a b c"])
    write_lines(tmp_path / "test.tgt.txt", ["a"])
    with pytest.raises(InputError, match="class-names file only applies to the classify"):
        read_eval_data("summarize", src, class_names=src)
    with pytest.raises(InputError, match="does not take an image folder"):
        read_eval_data("summarize", src, images=tmp_path)


# ---------------------------------------------------------------------- COCO captions


def karpathy_file(folder: Path) -> Path:
    images = [
        {"filepath": "val2014", "filename": coco_name("val2014", 1), "split": "test",
         "cocoid": 1, "imgid": 0, "sentids": [0, 1],
         "sentences": [{"raw": "A cat on a mat.", "tokens": ["a", "cat"], "sentid": 0},
                       {"raw": " a dog ", "tokens": ["a", "dog"], "sentid": 1}]},
        {"filepath": "val2014", "filename": coco_name("val2014", 2), "split": "val",
         "cocoid": 2, "sentences": [{"raw": "Two birds."}]},
        {"filepath": "train2014", "filename": coco_name("train2014", 3), "split": "restval",
         "cocoid": 3, "sentences": [{"raw": "A bus."}]},
        {"filepath": "val2014", "filename": coco_name("val2014", 4), "split": "test",
         "cocoid": 4, "sentences": [{"raw": "A tree."}]},
    ]
    return write_json(folder / "dataset_coco.json", {"images": images, "dataset": "coco"})


def test_karpathy_test_split_by_default(tmp_path):
    path = karpathy_file(tmp_path)
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    data = read_eval_data("caption", path)
    assert isinstance(data, EvalData) and data.format == "coco-karpathy"
    assert data.meta["split"] == "test" and data.candidates is None
    img = str((tmp_path / "val2014" / coco_name("val2014", 1)).resolve())
    assert data.records[0] == {"task": "caption", "id": "1", "image_id": 1, "image": img,
                               "caption": ["A cat on a mat.", "a dog"]}
    assert [r["id"] for r in data.records] == ["1", "4"]
    assert data.records[1]["image"].endswith("val2014/" + coco_name("val2014", 4))
    for r in data.records:
        validate_record(r, "test")


def test_karpathy_splits_and_folder(tmp_path):
    karpathy_file(tmp_path)
    make_image(tmp_path / "val2014" / coco_name("val2014", 2))
    make_image(tmp_path / "train2014" / coco_name("train2014", 3))
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    val = read_eval_data("caption", tmp_path / "dataset_coco.json", split="val")
    assert [(r["id"], r["caption"]) for r in val.records] == [("2", ["Two birds."])]
    restval = read_eval_data("coco", tmp_path, split="restval")  # a folder holding the file
    assert [r["id"] for r in restval.records] == ["3"]
    with pytest.raises(InputError, match=r"unknown split 'testA'; this file has "
                                         r"\['restval', 'test', 'val'\]"):
        read_eval_data("caption", tmp_path / "dataset_coco.json", split="testA")


def test_caption_image_folder_given_missing_or_wrong(tmp_path):
    path = karpathy_file(tmp_path / "ann")
    make_image(tmp_path / "coco" / "val2014" / coco_name("val2014", 1))
    data = read_eval_data("caption", path, images=tmp_path / "coco")
    assert data.records[0]["image"] == str(
        (tmp_path / "coco" / "val2014" / coco_name("val2014", 1)).resolve())
    with pytest.raises(InputError, match=r"image val2014/COCO_val2014_000000000001\.jpg of the "
                                         r"first record \(1\) was not found in .*--images"):
        read_eval_data("caption", path)
    with pytest.raises(InputError, match="image folder not found: .*nowhere"):
        read_eval_data("caption", path, images=tmp_path / "nowhere")
    with pytest.raises(InputError, match="was not found in"):
        read_eval_data("caption", path, images=tmp_path / "ann")


def mm_list(folder: Path, split: str = "val") -> Path:
    entries = [{"image": f"val2014/{coco_name('val2014', 5)}", "caption": ["c one", "c two"]},
               {"image": f"val2014/{coco_name('val2014', 6)}", "caption": ["d one"]}]
    return write_json(folder / f"coco_karpathy_{split}.json", entries)


def mm_gt(folder: Path, split: str = "val", drop: int | None = None) -> Path:
    anns = [{"image_id": 5, "caption": "g one", "id": 1}, {"image_id": 6, "caption": "h one",
                                                             "id": 2},
            {"image_id": 5, "caption": "g two", "id": 3}]
    anns = [a for a in anns if a["image_id"] != drop]
    return write_json(folder / f"coco_karpathy_{split}_gt.json",
                      {"annotations": anns, "images": [{"id": 5}, {"id": 6}]})


def test_mmpretrain_list_with_references_found_next_to_it(tmp_path):
    ann = tmp_path / "annotations"
    path = mm_list(ann)
    gt = mm_gt(ann)
    make_image(tmp_path / "val2014" / coco_name("val2014", 5))  # root: one above annotations/
    data = read_eval_data("caption", path, split="val")
    assert data.format == "coco-karpathy-list" and data.meta["references"] == str(gt)
    img = str((tmp_path / "val2014" / coco_name("val2014", 5)).resolve())
    assert data.records == [
        {"task": "caption", "id": "5", "image_id": 5, "image": img,
         "caption": ["g one", "g two"]},
        {"task": "caption", "id": "6", "image_id": 6,
         "image": img.replace("000000000005", "000000000006"), "caption": ["h one"]}]
    gt.unlink()  # without the references file, the list's own captions are used
    data = read_eval_data("caption", path)
    assert [r["caption"] for r in data.records] == [["c one", "c two"], ["d one"]]
    assert data.meta["references"] is None
    # the folder form finds <folder>/annotations/coco_karpathy_<split>.json
    assert len(read_eval_data("caption", tmp_path, split="val").records) == 2


def test_mmpretrain_list_errors(tmp_path):
    path = mm_list(tmp_path)
    make_image(tmp_path / "val2014" / coco_name("val2014", 5))
    gt = mm_gt(tmp_path, drop=6)
    with pytest.raises(InputError, match=r"no reference captions for image 6"):
        read_eval_data("caption", path)
    with pytest.raises(InputError, match="holds the val split"):
        read_eval_data("caption", path, split="test", annotations=gt)
    with pytest.raises(InputError, match="holds references only"):
        read_eval_data("caption", gt)
    with pytest.raises(InputError, match="COCO references file .*missing_gt.json: not found"):
        read_eval_data("caption", path, annotations=tmp_path / "missing_gt.json")


def test_train_list_merges_captions_per_image(tmp_path):
    entries = [{"image": f"train2014/{coco_name('train2014', 9)}", "caption": "one.",
                "image_id": "coco_9"},
               {"image": f"train2014/{coco_name('train2014', 9)}", "caption": "two.",
                "image_id": "coco_9"}]
    path = write_json(tmp_path / "coco_karpathy_train.json", entries)
    make_image(tmp_path / "train2014" / coco_name("train2014", 9))
    records = read_eval_data("caption", path).records
    assert [(r["id"], r["caption"]) for r in records] == [("9", ["one.", "two."])]


def test_official_coco_captions_file(tmp_path):
    path = write_json(tmp_path / "annotations" / "captions_val2014.json", {
        "images": [{"id": 7, "file_name": coco_name("val2014", 7)},
                   {"id": 8, "file_name": coco_name("val2014", 8)},
                   {"id": 99, "file_name": coco_name("val2014", 99)}],
        "annotations": [{"image_id": 8, "caption": "b", "id": 1},
                        {"image_id": 7, "caption": "a", "id": 2},
                        {"image_id": 8, "caption": "c ", "id": 3}]})
    make_image(tmp_path / "val2014" / coco_name("val2014", 7))
    data = read_eval_data("caption", path)
    assert data.format == "coco-captions"
    assert [(r["id"], r["caption"]) for r in data.records] == [("7", ["a"]), ("8", ["b", "c"])]
    assert data.records[0]["image"] == str((tmp_path / "val2014" /
                                            coco_name("val2014", 7)).resolve())


def test_caption_format_detection_errors(tmp_path):
    odd = write_json(tmp_path / "mine.json", {"something": []})
    with pytest.raises(InputError, match="not a caption file this reader knows; expected "
                                         "Karpathy's dataset_coco.json"):
        read_eval_data("caption", odd)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="cannot tell the caption data format of this folder"):
        read_eval_data("caption", tmp_path / "empty_dir")
    txt = write_lines(tmp_path / "caps.txt", ["x"])
    with pytest.raises(InputError, match="cannot tell the caption data format of this file"):
        read_eval_data("caption", txt)
    bad = tmp_path / "dataset_coco.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="Karpathy caption file .*not valid JSON"):
        read_eval_data("caption", bad)


def test_caption_content_detection_for_unusual_names(tmp_path):
    path = karpathy_file(tmp_path)
    renamed = path.rename(tmp_path / "karpathy_splits.json")
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    assert read_eval_data("caption", renamed).format == "coco-karpathy"


# ---------------------------------------------------------------------- TSV and JSONL


def test_caption_tsv_keeps_images_encoded_and_image_ids(tmp_path):
    png = b64_png()
    path = write_lines(tmp_path / "caption_test.tsv", [
        "\t".join(["162365", "12455", "a dock&&the sun sets", "sky&&dock", png]),
        "\t".join(["162366", "12456", "a dog", "dog", png])])
    data = read_eval_data("caption", path, split="test")
    assert data.format == "tsv" and len(data.records) == 2
    first = data.records[0]
    assert first == {"task": "caption", "id": "12455", "image_id": 12455,
                     "image": base64.b64decode(png), "caption": ["a dock", "the sun sets"]}
    assert [r["id"] for r in data.records[0:2]] == ["12455", "12456"]
    with pytest.raises(InputError, match="does not take an image folder"):
        read_eval_data("caption", path, images=tmp_path)
    with pytest.raises(InputError, match="holds the test split"):
        read_eval_data("caption", path, split="val")


def test_vqa_and_classify_tsv(tmp_path):
    png = b64_png()
    vqa = write_lines(tmp_path / "vqa_val.tsv", [
        "\t".join(["79459", "1", "is it red?", "0.6|!+no&&1.0|!+yes", "", png])])
    record = read_eval_data("vqa", vqa).records[0]
    assert record["question_id"] == 79459 and record["id"] == "79459"
    assert record["answers"] == {"no": 0.6, "yes": 1.0} and record["image"][:4] == b"\x89PNG"
    cls = write_lines(tmp_path / "imagenet_1k_val.tsv", [
        "\t".join([png, "769", "rugby ball"]), "\t".join([png, "1", "tench"]),
        "\t".join([png, "1", "tench"])])
    data = read_eval_data("imagenet", cls)
    assert data.candidates == ["rugby ball", "tench"]
    assert [r["label"] for r in data.records] == ["rugby ball", "tench", "tench"]
    names = write_lines(tmp_path / "names.txt", ["n01440764 tench, Tinca tinca",
                                                 "n04118538 rugby ball", "n00000001 goldfish"])
    assert read_eval_data("classify", cls, class_names=names).candidates == [
        "tench", "rugby ball", "goldfish"]


def test_ground_entail_summarize_tsv(tmp_path):
    png = b64_png()
    ground = write_lines(tmp_path / "refcoco_testA.tsv", [
        "\t".join(["79_1", "237367", "left man", "1,2,30.5,40", png])])
    record = read_eval_data("refcoco", ground, split="testA").records[0]
    assert (record["id"], record["text"], record["box"]) == ("79_1", "left man",
                                                             [1.0, 2.0, 30.5, 40.0])
    giga = write_lines(tmp_path / "gigaword_test.tsv", ["the dollar fell\tdollar falls"])
    assert read_eval_data("gigaword", giga).records[0] == {
        "task": "summarize", "id": "gigaword_test-1", "source": "the dollar fell",
        "summary": "dollar falls"}
    entail = write_lines(tmp_path / "snli_ve_test.tsv", [
        "\t".join(["1.jpg#0r1e", "1", png, "a man in a park", "a man is outside",
                   "entailment"])])
    assert read_eval_data("entail", entail).records[0]["label"] == "entailment"


def test_own_jsonl_records(tmp_path):
    make_image(tmp_path / "img" / "a.jpg")
    path = write_lines(tmp_path / "mine.jsonl", [
        json.dumps({"task": "caption", "image": "img/a.jpg", "caption": "a red square"}),
        json.dumps({"task": "summarize", "source": "x y", "summary": "x"}),
        json.dumps({"task": "caption", "id": "b", "image": "img/a.jpg", "caption": ["c"]})])
    data = read_eval_data("caption", path)
    assert data.format == "jsonl"
    assert [r["id"] for r in data.records] == ["mine-1", "b"]
    assert data.records[0]["image"] == str((tmp_path / "img" / "a.jpg").resolve())
    assert [r["id"] for r in read_eval_data("summarize", path).records] == ["mine-2"]
    with pytest.raises(InputError, match=r"no classify records"):
        read_eval_data("classify", path)
    (tmp_path / "img" / "a.jpg").unlink()
    with pytest.raises(InputError, match=r"image of the first record \(mine-1\) not found"):
        read_eval_data("caption", path)


# ---------------------------------------------------------------------- RefCOCO (refer)


def refs_list() -> list[dict]:
    return [
        {"ref_id": 10, "ann_id": 100, "image_id": 7, "split": "val", "category_id": 1,
         "file_name": "COCO_train2014_000000000007_100.jpg", "sent_ids": [1000, 1001],
         "sentences": [{"sent": "left man", "raw": "Left man!", "sent_id": 1000,
                        "tokens": ["left", "man"]},
                       {"sent": "man on the left", "raw": "man on the left", "sent_id": 1001,
                        "tokens": []}]},
        {"ref_id": 11, "ann_id": 101, "image_id": 8, "split": "testA", "category_id": 1,
         "file_name": "COCO_train2014_000000000008_101.jpg", "sent_ids": [1002],
         "sentences": [{"sent": "woman", "raw": "woman", "sent_id": 1002, "tokens": []}]},
        {"ref_id": 12, "ann_id": 102, "image_id": 8, "split": "train", "category_id": 1,
         "file_name": "COCO_train2014_000000000008_102.jpg", "sent_ids": [1003],
         "sentences": [{"sent": "dog", "raw": "dog", "sent_id": 1003, "tokens": []}]},
    ]


def refer_dataset(root: Path, name: str = "refcoco", split_by: str = "unc",
                  refs: list | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"refs({split_by}).p").write_bytes(pickle.dumps(refs or refs_list(), protocol=2))
    write_json(folder / "instances.json", {
        "images": [{"id": 7, "file_name": coco_name("train2014", 7), "width": 640},
                   {"id": 8, "file_name": coco_name("train2014", 8), "width": 640}],
        "annotations": [{"id": 100, "image_id": 7, "bbox": [10, 20, 30, 40],
                         "segmentation": [[0, 0, 1, 1]], "category_id": 1},
                        {"id": 101, "image_id": 8, "bbox": [1.5, 2.5, 3, 4], "category_id": 1},
                        {"id": 102, "image_id": 8, "bbox": [0, 0, 5, 5], "category_id": 1}],
        "categories": [{"id": 1, "name": "person"}]})
    return folder


def refer_images(root: Path) -> Path:
    # refer's own layout: <data root>/images/mscoco/images/train2014
    images = root / "images" / "mscoco" / "images" / "train2014"
    for i in (7, 8):
        make_image(images / coco_name("train2014", i))
    return images


def test_refer_val_split_boxes_and_ids(tmp_path):
    refer_dataset(tmp_path)
    images = refer_images(tmp_path)
    data = read_eval_data("refcoco", tmp_path)  # the refer data root; the alias picks refcoco/
    assert data.format == "refer"
    assert data.meta == {"split": "val", "refs": str(tmp_path / "refcoco" / "refs(unc).p"),
                         "dataset": "refcoco", "split_by": "unc"}
    img = str((images / coco_name("train2014", 7)).resolve())
    assert data.records == [
        {"task": "ground", "id": "10-1000", "image_id": 7, "ref_id": 10, "image": img,
         "text": "left man", "box": [10.0, 20.0, 40.0, 60.0]},
        {"task": "ground", "id": "10-1001", "image_id": 7, "ref_id": 10, "image": img,
         "text": "man on the left", "box": [10.0, 20.0, 40.0, 60.0]}]
    for r in data.records:
        validate_record(r, "test")
    test_a = read_eval_data("ground", tmp_path / "refcoco", split="testA")
    assert [(r["id"], r["box"]) for r in test_a.records] == [("11-1002", [1.5, 2.5, 4.5, 6.5])]
    assert test_a.records[0]["image"].endswith(coco_name("train2014", 8))


def test_refer_unknown_split_and_missing_files(tmp_path):
    folder = refer_dataset(tmp_path)
    refer_images(tmp_path)
    with pytest.raises(InputError, match=r"unknown split 'test'; this file has "
                                         r"\['testA', 'train', 'val'\]"):
        read_eval_data("ground", folder, split="test")
    (folder / "instances.json").unlink()
    with pytest.raises(InputError, match=r"refer instances file .*instances.json: not found"):
        read_eval_data("ground", folder)
    with pytest.raises(InputError, match="no refs\\(unc\\).p / refs\\(umd\\).p"):
        read_eval_data("ground", tmp_path / "images")


def test_refer_picks_refs_file_and_dataset(tmp_path):
    refer_dataset(tmp_path, "refcocog", "google")
    umd_refs = refs_list()
    umd_refs[1]["split"] = "test"
    refer_dataset(tmp_path, "refcocog", "umd", umd_refs)
    refer_images(tmp_path)
    data = read_eval_data("refcocog", tmp_path, split="test")
    assert data.meta["split_by"] == "umd" and [r["id"] for r in data.records] == ["11-1002"]
    google = read_eval_data("ground", tmp_path / "refcocog" / "refs(google).p", split="testA")
    assert google.meta["split_by"] == "google" and len(google.records) == 1
    refer_dataset(tmp_path, "refcoco+")
    with pytest.raises(InputError, match=r"holds several datasets \(refcoco\+, refcocog\)"):
        read_eval_data("ground", tmp_path)
    with pytest.raises(InputError, match="no refcoco/ folder"):
        read_eval_data("refcoco", tmp_path)
    assert len(read_eval_data("refcoco+", tmp_path).records) == 2


def test_refer_images_given_and_missing(tmp_path):
    folder = refer_dataset(tmp_path / "data")
    coco = tmp_path / "coco"
    make_image(coco / "train2014" / coco_name("train2014", 7))
    data = read_eval_data("ground", folder, images=coco)  # the folder above train2014/ works
    assert data.records[0]["image"] == str((coco / "train2014" /
                                            coco_name("train2014", 7)).resolve())
    with pytest.raises(InputError, match=r"image COCO_train2014_000000000007\.jpg of the first "
                                         r"record \(10-1000\) was not found"):
        read_eval_data("ground", folder)


def test_refer_refuses_malicious_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = refer_dataset(tmp_path)
    refer_images(tmp_path)
    (folder / "refs(unc).p").write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(InputError, match=r"refs\(unc\)\.p: refusing to unpickle "
                                         r"(posix|os|nt)\.system"):
        read_eval_data("ground", folder)
    assert not (tmp_path / "pwned").exists()


def test_refer_bad_refs_content(tmp_path):
    folder = refer_dataset(tmp_path, refs=[{"ref_id": 1}])
    with pytest.raises(InputError, match="ref 0 is not a refer ref"):
        read_eval_data("ground", folder)
    refs = refs_list()
    refs[0]["ann_id"] = 555
    refer_dataset(tmp_path, refs=refs)
    with pytest.raises(InputError, match="annotation 555 is not in"):
        read_eval_data("ground", folder)
    with pytest.raises(InputError, match="cannot tell the ground data format"):
        read_eval_data("ground", folder / "instances.json")


# ---------------------------------------------------------------------- VQAv2


def vqa_files(folder: Path) -> tuple[Path, Path]:
    questions = write_json(folder / "v2_OpenEnded_mscoco_val2014_questions.json", {
        "info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
        "data_subtype": "val2014", "license": {},
        "questions": [{"image_id": 1, "question": "What color is it? ", "question_id": 10},
                      {"image_id": 2, "question": "How many?", "question_id": 20}]})
    human_10 = ["maroon"] * 6 + ["red"] * 3 + ["blue"]
    annotations = write_json(folder / "v2_mscoco_val2014_annotations.json", {
        "data_subtype": "val2014", "annotations": [
            {"question_id": 20, "image_id": 2, "question_type": "how many",
             "answer_type": "number", "multiple_choice_answer": "2",
             "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": i + 1}
                         for i in range(10)]},
            {"question_id": 10, "image_id": 1, "question_type": "what color",
             "answer_type": "other", "multiple_choice_answer": "maroon",
             "answers": [{"answer": a, "answer_confidence": "maybe", "answer_id": i + 1}
                         for i, a in enumerate(human_10)]}]})
    return questions, annotations


def test_answer_scores_follow_the_official_leave_one_out_accuracy():
    humans = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]
    assert answer_scores(humans) == {"a": 1.0, "b": 0.9, "c": 0.6, "d": 0.3}
    assert answer_scores(["x"] * 10) == {"x": 1.0}


def test_vqav2_val_with_annotations_found_next_to_questions(tmp_path):
    questions, annotations = vqa_files(tmp_path / "vqa")
    coco = tmp_path / "coco"
    make_image(coco / "val2014" / coco_name("val2014", 1))
    data = read_eval_data("vqa", questions, images=coco)
    assert data.format == "vqav2"
    assert data.meta["subtype"] == "val2014" and data.meta["image_subtype"] == "val2014"
    assert data.meta["annotations"] == str(annotations)
    img = str((coco / "val2014" / coco_name("val2014", 1)).resolve())
    assert data.records[0] == {
        "task": "vqa", "id": "10", "question_id": 10, "image_id": 1, "image": img,
        "question": "What color is it?", "answers": {"maroon": 1.0, "red": 0.9, "blue": 0.3},
        "human_answers": ["maroon"] * 6 + ["red"] * 3 + ["blue"], "answer_type": "other"}
    assert data.records[1]["answers"] == {"2": 1.0} and data.records[1]["answer_type"] == "number"
    assert data.records[1]["image"] == img.replace("000000000001", "000000000002")
    for r in data.records:
        validate_record(r, "test")
    with pytest.raises(InputError, match="holds the val2014 questions, not split 'test-dev'"):
        read_eval_data("vqa", questions, split="test-dev", images=coco)


def test_vqav2_test_dev_has_no_answers_and_uses_test2015_images(tmp_path):
    questions = write_json(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", {
        "data_subtype": "test-dev2015",
        "questions": [{"image_id": 3, "question": "Is it day?", "question_id": 30}]})
    make_image(tmp_path / "test2015" / coco_name("test2015", 3))  # default: next to the file
    data = read_eval_data("vqa", questions)
    assert data.meta["subtype"] == "test-dev2015" and data.meta["annotations"] is None
    assert data.records == [{"task": "vqa", "id": "30", "question_id": 30, "image_id": 3,
                             "image": str((tmp_path / "test2015" /
                                           coco_name("test2015", 3)).resolve()),
                             "question": "Is it day?"}]
    sub = vqa_submission(data.records, {"30": " yes "})
    assert sub == [{"question_id": 30, "answer": "yes"}]


def test_vqav2_folder_split_selection(tmp_path):
    vqa_files(tmp_path)
    write_json(tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json", {
        "data_subtype": "test-dev2015",
        "questions": [{"image_id": 3, "question": "Is it day?", "question_id": 30}]})
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    make_image(tmp_path / "test2015" / coco_name("test2015", 3))
    with pytest.raises(InputError, match="holds several questions files"):
        read_eval_data("vqa", tmp_path)
    assert [r["id"] for r in read_eval_data("vqa", tmp_path, split="test-dev").records] == ["30"]
    val = read_eval_data("vqav2", tmp_path, split="val")
    assert [r["id"] for r in val.records] == ["10", "20"] and "answers" in val.records[0]
    with pytest.raises(InputError, match=r"no questions file for split 'train' \(train2014\)"):
        read_eval_data("vqa", tmp_path, split="train")


def test_vqav2_annotation_errors(tmp_path):
    questions, annotations = vqa_files(tmp_path)
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    with pytest.raises(InputError, match="is a VQA annotations file; pass the questions file"):
        read_eval_data("vqa", annotations)
    partial = write_json(tmp_path / "other" / "partial.json", {
        "annotations": [{"question_id": 10, "image_id": 1, "answers": [{"answer": "x"}]}]})
    with pytest.raises(InputError, match="has no answers for question 20"):
        read_eval_data("vqa", questions, annotations=partial)
    train = write_json(tmp_path / "other" / "train.json", {"data_subtype": "train2014",
                                                           "annotations": []})
    with pytest.raises(InputError, match="annotates train2014, but the questions are val2014"):
        read_eval_data("vqa", questions, annotations=train)
    with pytest.raises(InputError, match="VQA annotations file .*gone.json: not found"):
        read_eval_data("vqa", questions, annotations=tmp_path / "gone.json")


def test_vqa_submission_file(tmp_path):
    questions, _ = vqa_files(tmp_path)
    make_image(tmp_path / "val2014" / coco_name("val2014", 1))
    records = read_eval_data("vqa", questions).records
    preds = [{"id": "20", "task": "vqa", "prediction": "2"},
             {"id": "10", "task": "vqa", "prediction": "red"}]
    out = write_vqa_submission(tmp_path / "out" / "results.json", records, preds)
    assert json.loads(out.read_text()) == [{"question_id": 10, "answer": "red"},
                                           {"question_id": 20, "answer": "2"}]
    with pytest.raises(InputError, match=r"1 of 2 questions have no answer \(first: 20\)"):
        vqa_submission(records, {"10": "red"})


# ---------------------------------------------------------------------- SNLI-VE


def snli_lines() -> list[str]:
    return [json.dumps(x) for x in (
        {"Flickr30K_ID": "3416050480", "sentence1": "A man jumps.", "sentence2": "A person moves.",
         "gold_label": "entailment", "pairID": "3416050480.jpg#4r1e",
         "annotator_labels": ["entailment"], "captionID": "3416050480.jpg#4"},
        {"Flickr30K_ID": "3416050480", "sentence1": "A man jumps.", "sentence2": "A man sits.",
         "gold_label": "-", "pairID": "3416050480.jpg#4r1c"},
        {"Flickr30K_ID": "12345", "sentence1": "Two dogs.", "sentence2": "Cats sleep.",
         "gold_label": "contradiction", "pairID": "12345.jpg#0r1c"})]


def test_snli_ve_jsonl(tmp_path):
    path = write_lines(tmp_path / "snli" / "snli_ve_test.jsonl", snli_lines())
    make_image(tmp_path / "flickr30k-images" / "3416050480.jpg")
    data = read_eval_data("snli_ve", path)
    assert data.format == "snli-ve" and data.meta["skipped_unlabelled"] == 1
    img = str((tmp_path / "flickr30k-images" / "3416050480.jpg").resolve())
    assert data.records[0] == {"task": "entail", "id": "3416050480.jpg#4r1e",
                               "image_id": "3416050480", "image": img,
                               "premise": "A man jumps.", "hypothesis": "A person moves.",
                               "label": "entailment"}
    assert [r["label"] for r in data.records] == ["entailment", "contradiction"]
    assert data.records[1]["image"].endswith("flickr30k-images/12345.jpg")
    for r in data.records:
        validate_record(r, "test")
    with pytest.raises(InputError, match="holds the test split"):
        read_eval_data("entail", path, split="dev")


def test_snli_ve_folder_and_errors(tmp_path):
    write_lines(tmp_path / "snli_ve_dev.jsonl", snli_lines())
    make_image(tmp_path / "images" / "3416050480.jpg")
    assert len(read_eval_data("entail", tmp_path, split="val").records) == 2
    with pytest.raises(InputError, match=r"no snli_ve_test.jsonl \(found snli_ve_dev.jsonl\)"):
        read_eval_data("entail", tmp_path)
    bad = write_lines(tmp_path / "bad" / "snli_ve_test.jsonl", [json.dumps(
        {"Flickr30K_ID": "1", "sentence1": "a", "sentence2": "b", "gold_label": "maybe"})])
    with pytest.raises(InputError, match=r"snli_ve_test.jsonl:1: gold_label 'maybe'"):
        read_eval_data("entail", bad)
    with pytest.raises(InputError, match="image 3416050480.jpg of the first record"):
        read_eval_data("entail", tmp_path / "snli_ve_dev.jsonl", images=tmp_path / "bad")


def test_entail_jsonl_of_our_records_is_not_snli_ve(tmp_path):
    make_image(tmp_path / "a.png")
    path = write_lines(tmp_path / "ve.jsonl", [json.dumps(
        {"task": "entail", "image": "a.png", "hypothesis": "red", "label": "entailment"})])
    data = read_eval_data("entail", path)
    assert data.format == "jsonl" and data.records[0]["id"] == "ve-1"


# ---------------------------------------------------------------------- ImageNet folders


def imagenet_tree(root: Path) -> None:
    make_image(root / "val" / "n01440764" / "ILSVRC2012_val_00000293.JPEG")
    make_image(root / "val" / "n01440764" / "b.png")
    make_image(root / "val" / "n01443537" / "sub" / "c.jpg")
    (root / "val" / "n01443537" / "notes.txt").write_text("not an image")
    (root / "val" / "n09999999").mkdir()  # a class without images
    make_image(root / "train" / "n01440764" / "t.jpg")


def test_imagenet_folder_with_class_names(tmp_path):
    imagenet_tree(tmp_path)
    names = write_lines(tmp_path / "synset_words.txt", [
        "# comment", "n01440764 tench, Tinca tinca", "", "n01443537\tgoldfish, Carassius auratus",
        "n09999999 crane", "n02012849 crane"])
    data = read_eval_data("imagenet", tmp_path, class_names=names)  # default: root/val
    assert data.format == "image-folder"
    assert data.candidates == ["tench", "goldfish", "crane"]
    val = (tmp_path / "val").resolve()
    assert data.records == [
        {"task": "classify", "id": "n01440764/ILSVRC2012_val_00000293.JPEG",
         "image": str(val / "n01440764" / "ILSVRC2012_val_00000293.JPEG"), "label": "tench"},
        {"task": "classify", "id": "n01440764/b.png", "image": str(val / "n01440764" / "b.png"),
         "label": "tench"},
        {"task": "classify", "id": "n01443537/sub/c.jpg",
         "image": str(val / "n01443537" / "sub" / "c.jpg"), "label": "goldfish"}]
    train = read_eval_data("classify", tmp_path, split="train", class_names=names)
    assert [r["id"] for r in train.records] == ["n01440764/t.jpg"]
    with pytest.raises(InputError, match="no test/ folder for split 'test'"):
        read_eval_data("classify", tmp_path, split="test", class_names=names)


def test_imagenet_class_name_files():
    assert display_name("tench, Tinca tinca") == "tench"
    assert display_name("  great  white shark ,white shark") == "great white shark"


def test_class_names_json_and_errors(tmp_path):
    index = write_json(tmp_path / "imagenet_class_index.json",
                       {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]})
    assert read_class_names(index) == {"n01440764": "tench", "n01443537": "goldfish"}
    flat = write_json(tmp_path / "flat.json", {"n01440764": "tench, Tinca tinca"})
    assert read_class_names(flat) == {"n01440764": "tench"}
    bad = write_lines(tmp_path / "bad.txt", ["n01440764"])
    with pytest.raises(InputError, match=r"bad.txt:1: expected 'folder name'"):
        read_class_names(bad)
    dup = write_lines(tmp_path / "dup.txt", ["n1 a", "n1 b"])
    with pytest.raises(InputError, match="dup.txt:2: class 'n1' is listed twice"):
        read_class_names(dup)
    with pytest.raises(InputError, match="class-names file .*none.txt: not found"):
        read_class_names(tmp_path / "none.txt")


def test_imagenet_folder_errors(tmp_path):
    imagenet_tree(tmp_path)
    with pytest.raises(InputError, match="class folders are WordNet ids .*--class-names"):
        read_eval_data("classify", tmp_path)
    partial = write_lines(tmp_path / "partial.txt", ["n01440764 tench"])
    with pytest.raises(InputError, match="has no name for class folder\\(s\\) n01443537"):
        read_eval_data("classify", tmp_path, class_names=partial)
    with pytest.raises(InputError, match="image folder with one sub-folder per class"):
        read_eval_data("classify", partial)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        read_eval_data("classify", tmp_path / "empty")


def test_named_class_folders(tmp_path):
    make_image(tmp_path / "golden_retriever" / "1.jpg")
    make_image(tmp_path / "tabby cat" / "2.png")
    data = read_eval_data("classify", tmp_path)
    assert data.candidates == ["golden retriever", "tabby cat"]
    assert [(r["id"], r["label"]) for r in data.records] == [
        ("golden_retriever/1.jpg", "golden retriever"), ("tabby cat/2.png", "tabby cat")]


# ---------------------------------------------------------------------- Gigaword


def test_gigaword_src_tgt_pairs(tmp_path):
    src = write_lines(tmp_path / "test.src.txt", ["factory orders rose # percent", "  ",
                                                  "the dollar fell against the yen"])
    write_lines(tmp_path / "test.tgt.txt", ["orders up", "empty article", "dollar falls"])
    data = read_eval_data("gigaword", src)
    assert data.format == "gigaword-text" and data.meta["skipped_blank"] == 1
    assert data.meta["reference"] == str(tmp_path / "test.tgt.txt")
    assert data.records == [
        {"task": "summarize", "id": "test.src-1", "source": "factory orders rose # percent",
         "summary": "orders up"},
        {"task": "summarize", "id": "test.src-3", "source": "the dollar fell against the yen",
         "summary": "dollar falls"}]
    assert len(read_eval_data("summarize", tmp_path).records) == 2  # folder, default test


def test_gigaword_harvardnlp_names_and_explicit_reference(tmp_path):
    giga = tmp_path / "sumdata" / "Giga"
    src = write_lines(giga / "input.txt", ["a b c", "d e f"])
    write_lines(giga / "task1_ref0.txt", ["a", "d"])
    assert [r["summary"] for r in read_eval_data("summarize", src, split="test").records] == [
        "a", "d"]
    assert len(read_eval_data("summarize", tmp_path / "sumdata").records) == 2
    article = write_lines(tmp_path / "valid.article.filter.txt", ["x y"])
    write_lines(tmp_path / "valid.title.filter.txt", ["x"])
    assert read_eval_data("summarize", tmp_path, split="val").records[0]["summary"] == "x"
    other = write_lines(tmp_path / "refs.txt", ["z"])
    assert read_eval_data("summarize", article, annotations=other).records[0]["summary"] == "z"


def test_gigaword_errors(tmp_path):
    src = write_lines(tmp_path / "test.source", ["a", "b"])
    with pytest.raises(InputError, match="no reference file found for .*test.source"):
        read_eval_data("summarize", src)
    write_lines(tmp_path / "test.target", ["a"])
    with pytest.raises(InputError, match="has 2 lines but .*test.target has 1"):
        read_eval_data("summarize", src)
    with pytest.raises(InputError, match="no Gigaword source file for split 'train'"):
        read_eval_data("summarize", tmp_path, split="train")


def test_reading_benchmarks_does_not_load_the_scene_renderer():
    import subprocess
    import sys

    code = ("import sys, ofa.data.benchmarks, ofa.data.records; "
            "print('ofa.data.shapes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
