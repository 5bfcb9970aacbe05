"""Gigaword ROUGE: hand-checked clean-up rules, scores against rouge_score called directly."""

from __future__ import annotations

import pytest

from ofa.errors import InputError
from ofa.metrics import fix_tokenization, gigaword_postprocess, rouge_scores


@pytest.mark.parametrize("raw, expected", [
    ("US Stocks Close Higher", "us stocks close higher"),
    ("  Leading and trailing  ", "leading and trailing"),
    ("police arrest 1 man over 1990 attack", "police arrest # man over #990 attack"),
    ("2 killed in 3 blasts", "2 killed in 3 blasts"),       # only "1" becomes "#"
    ("obama ' s visit", "obama 's visit"),
    ("we ' ll see", "we 'll see"),
    ("don ' t panic", "do n't panic"),
    ("prices up 1 , 500 points", "prices up #,500 points"),
    ("rates rise 3 . 5 percent", "rates rise 3.5 percent"),
    ('he said " no " today', "he said `` no '' today"),
    ("a ' quoted ' word", "a ` quoted ' word"),
    ("state - of - the - art plan", "state-of-the-art plan"),
    ("wait . . . and see", "wait ... and see"),
    ("talks ( in paris ) end", "talks -lrb- in paris -rrb- end"),
    ("profits & losses", "profits &amp; losses"),
    ("up - - down", "up -- down"),
    ("- dash first", "- dash first"),
])
def test_gigaword_postprocess(raw, expected):
    assert gigaword_postprocess(raw) == expected


def test_fix_tokenization_keeps_case_rules():
    # rules that only fire before lowercasing, kept as the official helper has them
    assert fix_tokenization("the U . N . says") == "the U.N. . says"  # last "." emitted twice
    assert fix_tokenization("[UNK] token") == "UNK token"
    assert fix_tokenization("") == ""


def test_rouge_by_hand():
    got = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    # unigrams: 3 of 3 predicted, 3 of 6 reference -> F = 2 * 1 * 0.5 / 1.5
    assert got["rouge1"] == pytest.approx(2 / 3)
    # bigrams: 2 of 2 predicted, 2 of 5 reference -> F = 2 * 0.4 / 1.4
    assert got["rouge2"] == pytest.approx(0.8 / 1.4)
    assert got["rougeL"] == pytest.approx(2 / 3)  # LCS of 3 words
    # the Porter stemmer is on: inflections match
    assert rouge_scores(["dogs running"], ["dog runs"])["rouge1"] == pytest.approx(1.0)
    assert rouge_scores(["nothing alike"], ["completely different"]) == {
        "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_matches_rouge_score_package():
    from rouge_score.rouge_scorer import RougeScorer

    preds = [gigaword_postprocess(p) for p in [
        "US stocks close higher on Fed hopes", "Police arrest 1 man over attack",
        "Obama ' s visit to China ends"]]
    refs = ["us stocks end higher as fed hopes rise", "police arrest # suspects in attack",
            "obama wraps up china visit"]
    got = rouge_scores(preds, refs)
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL"):
        assert got[key] == pytest.approx(sum(s[key].fmeasure for s in per) / len(per))
        assert 0 < got[key] < 1
    assert set(got) == {"rouge1", "rouge2", "rougeL"}


@pytest.mark.parametrize("call", [
    lambda: rouge_scores(["a"], ["a", "b"]),
    lambda: rouge_scores([], []),
    lambda: rouge_scores("a", "a"),
    lambda: rouge_scores([None], ["a"]),
    lambda: gigaword_postprocess(None),
])
def test_rouge_input_errors(call):
    with pytest.raises(InputError):
        call()
