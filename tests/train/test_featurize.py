"""Training featurization: records to teacher-forced samples (prompts and targets per task,
image cache, answer constraints) and padded batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from ofa.boxes import box_to_bins
from ofa.errors import InputError
from ofa.tasks import EntailmentTask, GroundingTask, VQATask
from ofa.tokenizer import BOS, EOS, PAD
from ofa.train.featurize import ResizedImageCache, build_sample, candidate_tries, collate


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


def test_imagine_sample_targets_the_codes_in_code_mode(tokenizer, image):
    codes = [5, 0, 8191, 7]  # a 2 x 2 grid
    s = build_sample({"task": "imagine", "id": "g", "text": "a red   circle", "codes": codes},
                     tokenizer, max_target_length=2)
    assert s.code and s.image is None
    assert s.source == tokenizer.encode(" what is the complete image? caption: a red circle")
    # the whole grid, never cut to max_target_length, then EOS
    assert s.target == [50265 + c for c in codes] + [EOS]
    caption = build_sample({"task": "caption", "id": "c", "image": image,
                            "caption": "a red square"}, tokenizer, image_size=32)
    batch = collate([caption, s])
    assert batch.code_mask.tolist() == [False, True]
    # every row of the drawing (4 codes + EOS) is held to the special ids and the code range
    rows = batch.allowed_rows.tolist()
    assert rows == list(range(len(caption.target), len(caption.target) + 5))
    mask = batch.allowed_mask(len(tokenizer))
    allowed = mask[0].nonzero().flatten().tolist()
    assert allowed == [0, 1, 2, 3, *range(50265, 58457)] and bool(mask.all(1).logical_not().all())
    # the loss takes the code rows apart, with no [rows, V] mask for them
    answer_rows, answer_mask, code_rows = batch.split_constraints(len(tokenizer))
    assert answer_rows is None and answer_mask is None and code_rows.tolist() == rows
    mixed = dataclasses.replace(batch, allowed_rows=torch.tensor([0, rows[0], rows[1]]),
                                allowed_ids=[[5, 6], None, None])
    answer_rows, answer_mask, code_rows = mixed.split_constraints(len(tokenizer))
    assert answer_rows.tolist() == [0] and code_rows.tolist() == rows[:2]
    assert answer_mask.shape == (1, len(tokenizer))
    assert answer_mask[0].nonzero().flatten().tolist() == [5, 6]
    assert collate([caption]).split_constraints(9) == (None, None, None)
    for bad, why in (({"codes": [1, 2, 3]}, "square"), ({"codes": [8192] * 4}, "0-8191"),
                     ({}, "needs 'codes'")):
        rec = {"task": "imagine", "id": "b", "text": "a red circle", **bad}
        with pytest.raises(InputError, match=why):
            build_sample(rec, tokenizer)
