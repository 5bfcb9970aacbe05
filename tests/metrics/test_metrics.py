"""Metrics against hand-computed values and the library called directly."""

from __future__ import annotations

import pytest

from ofa.errors import InputError
from ofa.metrics import accuracy, box_iou, caption_scores, grounding_accuracy, vqa_score


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_grounding_accuracy_threshold_and_missing():
    refs = [[0, 0, 10, 10]] * 4
    preds = [[0, 0, 10, 10], [5, 0, 15, 10], None, [0, 0, 10, 20]]  # IoU 1, 1/3, -, 1/2
    assert grounding_accuracy(preds, refs) == 0.5
    with pytest.raises(InputError):
        grounding_accuracy(preds[:2], refs)


def test_accuracies():
    assert accuracy(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    assert vqa_score(["red", " blue", "two"], [{"red": 1.0}, {"blue": 0.6}, {"2": 1.0}]) == \
        pytest.approx(1.6 / 3)


def test_caption_scores_match_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    preds = ["a red circle and a blue square", "a small green triangle", "a purple diamond"]
    refs = [["a red circle and a blue square"], ["a small green square", "a green triangle"],
            ["a large purple diamond"]]
    got = caption_scores(preds, refs)
    gts = dict(enumerate(refs))
    res = {i: [p] for i, p in enumerate(preds)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    assert [got[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert got["cider"] == pytest.approx(cider)
    assert caption_scores(preds[:1], refs[:1])["bleu4"] == pytest.approx(1.0, abs=1e-6)
    # normalisation: case and punctuation do not count
    assert caption_scores(["A red circle, and a blue square."], refs[:1])["bleu4"] == \
        pytest.approx(1.0, abs=1e-6)
