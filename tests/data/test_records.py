"""The JSONL record format: validation, prompts/targets per task, collation, mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.boxes import box_to_bins
from ofa.data.records import (
    ResizedImageCache,
    build_sample,
    candidate_tries,
    collate,
    read_jsonl,
    validate_record,
)
from ofa.errors import InputError
from ofa.tasks import EntailmentTask, GroundingTask, VQATask
from ofa.tokenizer import BOS, EOS, PAD, OFATokenizer
from ofa.train.data import StepBatches, phases, shares


@pytest.fixture(scope="module")
def tokenizer(bpe_dir: Path) -> OFATokenizer:
    return OFATokenizer.from_dir(bpe_dir)


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


def test_caption_sample(tokenizer, image):
    s = build_sample({"task": "caption", "id": "c", "image": image,
                      "caption": ["A Red, square!", "other"]}, tokenizer, image_size=32)
    answer = tokenizer.encode(" a red square", add_bos_eos=False)
    assert s.source == tokenizer.encode(" what does the image describe?")
    assert s.decoder_input == [BOS, *answer] and s.target == [*answer, EOS]
    assert s.image.shape == (3, 32, 32)


def test_vqa_sample_uses_question_prefix_and_best_answer(tokenizer, image):
    rec = {"task": "vqa", "id": "v", "image": image, "question": "What color is it",
           "answers": {"red": 0.6, "pink": 0.3}, "weight": 0.5}
    s = build_sample(rec, tokenizer)
    ex = VQATask().prepare(tokenizer, "v", question="What color is it")
    answer = tokenizer.encode(" red", add_bos_eos=False)
    assert s.source == ex.source and len(ex.prefix) > 0
    assert s.decoder_input == [BOS, *ex.prefix, *answer]
    assert s.target == [PAD] * len(ex.prefix) + [*answer, EOS]
    assert s.weight == pytest.approx(0.3)  # record weight x answer confidence
    assert s.image.shape == (3, 480, 480)  # the task's official size by default


def test_image_cache_gives_the_same_sample_and_reads_each_file_once(tokenizer, tmp_path):
    path = tmp_path / "scene.png"
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    ground = {"task": "ground", "id": "g", "image": str(path), "text": "the red thing",
              "box": [8, 4, 40, 30]}
    caption = {"task": "caption", "id": "c", "image": str(path), "caption": "a red square"}
    cache = ResizedImageCache()
    cached = build_sample(ground, tokenizer, image_size=32, image_cache=cache)
    plain = build_sample(ground, tokenizer, image_size=32)
    assert torch.equal(cached.image, plain.image) and cached.target == plain.target
    path.unlink()  # a cache hit must not touch the file again
    again = build_sample(caption, tokenizer, image_size=32, image_cache=cache)
    assert torch.equal(again.image, plain.image) and len(cache) == 1
    with pytest.raises(InputError):  # another size is another entry: read from disk, gone
        build_sample(caption, tokenizer, image_size=48, image_cache=cache)


def test_ground_and_entail_samples(tokenizer, image):
    s = build_sample({"task": "ground", "id": "g", "image": image, "text": "the red thing",
                      "box": [8, 4, 40, 30]}, tokenizer, image_size=64)
    bins = box_to_bins([8, 4, 40, 30], (64, 48), 64)
    assert s.source == GroundingTask().prepare(tokenizer, "g", text="the red thing").source
    assert s.decoder_input == [BOS, *bins] and s.target == [*bins, EOS]
    e = build_sample({"task": "entail", "id": "e", "image": image, "hypothesis": "it is red",
                      "premise": "a photo", "label": "neutral"}, tokenizer, image_size=32)
    ex = EntailmentTask().prepare(tokenizer, "e", hypothesis="it is red", premise="a photo")
    maybe = tokenizer.encode(" maybe", add_bos_eos=False)
    assert e.source == ex.source and e.target == [PAD] * len(ex.prefix) + [*maybe, EOS]


def test_constrained_samples_carry_the_trie_mask(tokenizer, image):
    answers = ["red", "dark red", "dark blue", "two"]
    records = [{"task": "classify", "id": "k1", "image": image, "label": "cat"},
               {"task": "classify", "id": "k2", "image": image, "label": "dog"}]
    tries = candidate_tries(["vqa", "entail", "classify"], tokenizer, vqa_answers=answers,
                            records=records)
    rec = {"task": "vqa", "id": "v", "image": image, "question": "what color?",
           "answers": {"dark red": 1.0}}
    s = build_sample(rec, tokenizer, image_size=32, tries=tries)
    plain = build_sample(rec, tokenizer, image_size=32)
    assert s.target == plain.target and plain.allowed is None
    n_prefix = s.target.count(PAD)
    assert s.allowed[:n_prefix] == [None] * n_prefix
    first = {tokenizer.encode(" " + a, add_bos_eos=False)[0] for a in answers}
    dark, red = tokenizer.encode(" dark red", add_bos_eos=False)
    blue = tokenizer.encode(" dark blue", add_bos_eos=False)[1]
    assert set(s.allowed[n_prefix]) == first and len(first) == 3  # red, dark, two
    assert s.target[n_prefix:] == [dark, red, EOS]
    assert set(s.allowed[n_prefix + 1]) == {red, blue}
    assert s.allowed[n_prefix + 2] == [EOS]
    entail = build_sample({"task": "entail", "id": "e", "image": image, "hypothesis": "it is red",
                           "label": "contradiction"}, tokenizer, image_size=32, tries=tries)
    yes_no_maybe = {tokenizer.encode(" " + a, add_bos_eos=False)[0]
                    for a in ("yes", "no", "maybe")}
    assert set(entail.allowed[entail.target.count(PAD)]) == yes_no_maybe
    cls = build_sample(records[1], tokenizer, image_size=32, tries=tries)
    assert set(cls.allowed[0]) == {tokenizer.encode(" cat", add_bos_eos=False)[0],
                                   tokenizer.encode(" dog", add_bos_eos=False)[0]}
    caption = build_sample({"task": "caption", "id": "c", "image": image,
                            "caption": "a red square"},
                           tokenizer, image_size=32, tries=tries)
    assert caption.allowed is None  # captions have no candidates
    with pytest.raises(InputError, match="v2: its vqa target is not among"):
        build_sample({**rec, "id": "v2", "answers": {"green": 1.0}}, tokenizer, image_size=32,
                     tries=tries)
    with pytest.raises(InputError, match="data.vqa_answers"):
        candidate_tries(["vqa"], tokenizer, vqa_answers=None, records=[])

    # collate: the constrained rows index target[target != PAD], row-major
    batch = collate([caption, s, entail])
    flat = batch.target[batch.target.ne(PAD)]
    rows = batch.allowed_rows.tolist()
    assert len(rows) == 3 + 2 and rows[0] == len(caption.target)
    assert flat[rows].tolist() == [dark, red, EOS, *entail.target[-2:]]
    mask = batch.allowed_mask(len(tokenizer))
    assert mask.shape == (5, len(tokenizer)) and mask[2].nonzero().flatten().tolist() == [EOS]
    assert set(mask[0].nonzero().flatten().tolist()) == first
    assert collate([caption]).allowed_rows is None and collate([caption]).allowed_mask(9) is None


def test_collate_pads_and_mixes_text_only(tokenizer, image):
    a = build_sample({"task": "caption", "id": "c", "image": image, "caption": "a red square"},
                     tokenizer, image_size=32)
    b = build_sample({"task": "summarize", "id": "s", "source": "the quick brown fox jumps",
                      "summary": "fox jumps"}, tokenizer)
    batch = collate([a, b])
    assert batch.images.shape == (2, 3, 32, 32) and batch.image_mask.tolist() == [True, False]
    assert batch.source.shape[0] == 2 and batch.target.shape == batch.decoder_input.shape
    assert batch.ntokens == len(a.target) + len(b.target)
    assert batch.target[0, len(a.target):].eq(PAD).all()


def test_shares_follow_ratios():
    assert shares([1, 1], 4) == [2, 2]
    assert shares([0.25, 0.25, 0.25, 0.15, 0.10], 64) == [16, 16, 16, 10, 6]
    assert sum(shares([3, 1, 1], 7)) == 7
    with pytest.raises(InputError, match="cannot hold"):
        shares([1, 1000], 8)


def test_step_batches_deterministic_epochs_and_ranks(tokenizer, image):
    recs = [{"task": "summarize", "id": f"s{i}", "source": f"text number {i}",
             "summary": f"n {i}"} for i in range(10)]
    caps = [{"task": "caption", "id": f"c{i}", "image": image, "caption": f"cap {i}"}
            for i in range(3)]
    one = StepBatches([recs, caps], [2, 1], tokenizer, batch_size=6, seed=4)
    again = StepBatches([recs, caps], [2, 1], tokenizer, batch_size=6, seed=4)
    assert one.phase_counts == [[4, 2]]
    assert one.global_indices(7) == again.global_indices(7)
    assert one.global_indices(7) != one.global_indices(8)
    # dataset 0 is read in epoch order: 10 records over steps 0..4 (4 per step), each once
    seen = [i for step in range(5) for d, i in one.global_indices(step) if d == 0][:10]
    assert sorted(seen) == list(range(10))
    # two ranks with half the batch read exactly the single-process samples
    ranks = [StepBatches([recs, caps], [2, 1], tokenizer, batch_size=3, seed=4, rank=r,
                         world_size=2) for r in (0, 1)]
    whole = one[3][0]
    parts = [r[3][0] for r in ranks]
    assert parts[0].tasks + parts[1].tasks == whole.tasks
    assert sum(p.ntokens for p in parts) == whole.ntokens


def test_phases_share_the_batch_among_active_datasets():
    starts, counts = phases([0.5, 0.5, 0.5], [(0, 4), (0, None), (4, None)], 8)
    assert starts == [0, 4] and counts == [[4, 4, 0], [0, 4, 4]]
    # phases at or after the last update are never trained: no error for an empty tail
    assert phases([1.0], [(0, 10)], 8, num_updates=10) == ([0], [[8]])
    with pytest.raises(InputError, match="no training dataset is active from update 10"):
        phases([1.0], [(0, 10)], 8, num_updates=20)
    with pytest.raises(InputError, match="no training dataset is active from update 0"):
        phases([1.0], [(3, None)], 8)


def test_curriculum_reads_each_dataset_on_across_phases(tokenizer):
    def records(name: str, n: int) -> list[dict]:
        return [{"task": "summarize", "id": f"{name}{i}", "source": f"{name} {i}",
                 "summary": name} for i in range(n)]

    data = [records("a", 12), records("b", 12), records("c", 12)]
    batches = StepBatches(data, [1, 1, 1], tokenizer, batch_size=4, seed=2,
                          windows=[(0, 3), (0, None), (3, None)])
    per_step = [[d for d, _ in batches.global_indices(s)] for s in range(6)]
    assert all(sorted(p) == [0, 0, 1, 1] for p in per_step[:3])
    assert all(sorted(p) == [1, 1, 2, 2] for p in per_step[3:])
    # dataset 1 runs through both phases: its 12 records are each read once over 6 updates
    read_b = [i for s in range(6) for d, i in batches.global_indices(s) if d == 1]
    assert sorted(read_b) == list(range(12))
    # dataset 2 starts at its first record when it joins
    read_c = [i for s in range(3, 9) for d, i in batches.global_indices(s) if d == 2]
    assert sorted(read_c) == list(range(12))
    assert batches[4][0].tasks == ["summarize"] * 4
