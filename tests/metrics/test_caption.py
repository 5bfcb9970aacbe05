"""Caption metrics against pycocoevalcap's scorers and tokenizer called directly."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest

from ofa.errors import InputError
from ofa.metrics import (
    CaptionReport,
    caption_metrics_unavailable,
    caption_report,
    caption_scores,
    ptb_tokenize,
)
from ofa.metrics import caption as caption_module

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no `java` on PATH")

PREDS = ["a man riding a horse on a beach", "two dogs playing in the snow", "a plate of food"]
REFS = [["A man rides a horse along the beach.", "a person on a horse near the ocean"],
        ["Two dogs play in snow.", "dogs running in the snow"],
        ["a plate with pizza on it", "food on a white plate"]]


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _official_tokens(preds, refs):
    """gts/res as the COCO evaluation builds them, with pycocoevalcap's own PTBTokenizer."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    res = _quiet(tok.tokenize, {i: [{"caption": p}] for i, p in enumerate(preds)})
    gts = _quiet(tok.tokenize, {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    return gts, res


@pytest.fixture
def no_java(monkeypatch):
    """Java made unavailable: nothing named `java` on PATH."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("java") is None


@needs_java
def test_ptb_tokenize_matches_pycocoevalcap():
    texts = ["A man's dog, running -- fast!", "", "Don't (stop) \"now\"...", "???",
             "café über 1,000.5 U.S.", "two\nlines", "  lots   of  space ", "add 1 1/2 cups"]
    gts, _ = _official_tokens(["x"], [texts])
    assert ptb_tokenize(texts) == gts[0]
    assert ptb_tokenize(texts)[0] == "a man 's dog running fast"  # punctuation tokens dropped
    # the tokenizer joins a fraction with a non-breaking space: one token, as pycocoevalcap has it
    assert ptb_tokenize(texts)[-1] == "add 1\xa01/2 cups"


# an empty candidate after punctuation removal, and a fraction the PTB tokenizer keeps as one
# token: both change the scores unless handled as the official evaluation does
EDGE_PREDS = PREDS + ["...", "add 1 1/2 cups of flour"]
EDGE_REFS = REFS + [["a cat on a mat"], ["add 1 1/2 cups of flour", "add one cup of flour"]]


@needs_java
@pytest.mark.parametrize("preds, refs", [(PREDS, REFS), (EDGE_PREDS, EDGE_REFS)],
                         ids=["plain", "empty-and-fraction"])
def test_all_metrics_match_pycocoevalcap_scorers(preds, refs):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    report = caption_report(preds, refs, metrics=("bleu", "meteor", "rouge_l", "cider"))
    assert report.tokenizer == "ptb" and report.skipped == {} and report.notes == ()
    gts, res = _official_tokens(preds, refs)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    del meteor_scorer
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = _quiet(Cider().compute_score, gts, res)
    assert [report.scores[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert report.scores["meteor"] == pytest.approx(meteor)
    assert report.scores["rouge_l"] == pytest.approx(rouge)
    assert report.scores["cider"] == pytest.approx(cider)
    assert 0 < report.scores["meteor"] < 1 and 0 < report.scores["rouge_l"] < 1


@needs_java
def test_full_report_has_java_metrics_and_explains_spice(monkeypatch, tmp_path):
    # SPICE's jars pointed at an empty folder, so the outcome does not depend on this machine
    monkeypatch.setattr(caption_module, "_spice_jars",
                        lambda: [tmp_path / "stanford-corenlp-3.6.0.jar"])
    report = caption_report(PREDS, REFS)
    assert {"meteor", "rouge_l", "cider", "bleu4"} <= set(report.scores)
    assert "spice" not in report.scores
    assert "Stanford CoreNLP" in report.skipped["spice"]
    assert caption_metrics_unavailable() == {"spice": report.skipped["spice"]}


def test_without_java_meteor_is_skipped_with_a_reason(no_java):
    report = caption_report(PREDS, REFS, metrics=("bleu", "meteor", "rouge_l", "cider"))
    assert isinstance(report, CaptionReport)
    assert "meteor" not in report.scores
    assert "java" in report.skipped["meteor"].lower()
    assert {"bleu1", "bleu4", "rouge_l", "cider"} <= set(report.scores)
    assert report.tokenizer == "simple"
    assert len(report.notes) == 1 and "PTB" in report.notes[0]
    assert "meteor" in caption_metrics_unavailable(["meteor"])
    with pytest.raises(InputError, match="Java"):
        caption_scores(PREDS, REFS, tokenizer="ptb")


def test_simple_tokenizer_matches_scorers_on_plain_text():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    preds = ["a red circle and a blue square", "a small green triangle", "a purple diamond"]
    refs = [["a red circle and a blue square"], ["a small green square", "a green triangle"],
            ["a large purple diamond"]]
    got = caption_scores(preds, refs, metrics=("bleu", "rouge_l", "cider"), tokenizer="simple")
    gts, res = dict(enumerate(refs)), {i: [p] for i, p in enumerate(preds)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [got[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert got["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0])
    assert got["cider"] == pytest.approx(_quiet(Cider().compute_score, gts, res)[0])
    # case and punctuation do not count
    assert caption_scores(["A red circle, and a blue square."], refs[:1],
                          tokenizer="simple")["bleu4"] == pytest.approx(1.0, abs=1e-6)


def test_default_is_the_fast_set():
    assert set(caption_scores(PREDS, REFS, tokenizer="simple")) == {
        "bleu1", "bleu2", "bleu3", "bleu4", "cider"}


def test_empty_prediction_scores_zero_without_crashing():
    got = caption_scores(["", "a plate of food"], [["a dog"], ["a plate of food"]],
                         metrics=("bleu", "rouge_l", "cider"), tokenizer="simple")
    assert 0 <= got["bleu1"] < 1 and got["rouge_l"] == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, match", [
    ({"metrics": ("bleu", "wer")}, "unknown caption metrics"),
    ({"metrics": ()}, "no caption metrics"),
    ({"tokenizer": "moses"}, "unknown tokenizer"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        caption_scores(PREDS, REFS, **kwargs)


@pytest.mark.parametrize("preds, refs", [
    (PREDS[:2], REFS),
    ([], []),
    (["a cat"], ["a cat"]),      # references must be a list per caption
    (["a cat"], [[]]),
    ([None], [["a cat"]]),
])
def test_bad_inputs(preds, refs):
    with pytest.raises(InputError):
        caption_scores(preds, refs, tokenizer="simple")


def test_a_failing_java_scorer_is_reported_not_raised(monkeypatch):
    import subprocess

    def broken(gts, res):
        raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

    monkeypatch.setattr(caption_module, "caption_metrics_unavailable", lambda metrics: {})
    monkeypatch.setitem(caption_module._SCORERS, "spice", broken)
    report = caption_report(PREDS, REFS, metrics=("cider", "spice"), tokenizer="simple")
    assert set(report.scores) == {"cider"}
    assert "CalledProcessError" in report.skipped["spice"]


def test_full_is_shorthand_for_every_metric(monkeypatch):
    asked = []
    real = caption_module.caption_report

    def spy(preds, refs, *, metrics, tokenizer):
        asked.append(tuple(metrics))
        return real(preds, refs, metrics=("cider",), tokenizer="simple")

    monkeypatch.setattr(caption_module, "caption_report", spy)
    caption_scores(PREDS, REFS, full=True)
    caption_scores(PREDS, REFS)
    assert asked == [caption_module.CAPTION_METRICS, caption_module.FAST_CAPTION_METRICS]
    with pytest.raises(InputError, match="not both"):
        caption_scores(PREDS, REFS, metrics=("bleu",), full=True)
