"""Ranking drawings by the model's own caption likelihood: the embedded demo model (trained to
caption ShapesWorld) must prefer the scene its caption describes over other images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ofa
from ofa.data.shapes import ShapesWorld
from ofa.generate import score_candidates
from ofa.imagegen.rank import CaptionRanker
from ofa.tokenizer import BOS


@pytest.fixture(scope="module")
def demo():
    return ofa.load("shapes-demo", device="cpu")


def test_the_described_scene_ranks_first(demo):
    world = ShapesWorld(seed=0)
    scenes = [world.scene("test", i) for i in range(4)]
    images = [s.render() for s in scenes]
    ranker = CaptionRanker(demo.model, demo.tokenizer, demo.image_size, batch_size=3)
    for k, scene in enumerate(scenes):
        scores = ranker.scores(images + [Image.new("RGB", (128, 128), "white")],
                               scene.caption())
        assert scores.shape == (5,) and int(scores.argmax()) == k, (scene.caption(), scores)


def test_scores_are_the_caption_targets_log_probability(demo):
    image = ShapesWorld(seed=0).scene("test", 0).render()
    caption = "a large red circle"
    ranker = CaptionRanker(demo.model, demo.tokenizer, demo.image_size)
    got = ranker.scores(torch.from_numpy(np.array(image))[None], caption)
    # by hand: the caption task's prompt and target, scored by the generic candidate scorer
    pixels, _ = ranker.transform.batch([image])
    enc = demo.model.encode(torch.tensor([ranker.task.prepare(demo.tokenizer, "").source]),
                            pixels)
    target = demo.tokenizer.encode(" a large red circle", add_bos_eos=False)
    want = score_candidates(demo.model, enc, [[BOS]], [target])[0, 0]
    assert float(got[0]) == pytest.approx(float(want), abs=1e-5)
