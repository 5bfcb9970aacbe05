"""Official VQA accuracy and answer normalisation, against hand-computed values."""

from __future__ import annotations

import pytest

from ofa.errors import InputError
from ofa.metrics import mean_vqa_accuracy, normalize_answer, vqa_accuracy


@pytest.mark.parametrize("raw, expected", [
    ("Yes!", "yes"),                      # "!" touches no space: becomes a space, then dropped
    ("black/white", "black white"),       # "/" between letters becomes a space
    ("hi, there", "hi there"),            # "," touches a space: deleted
    ("1,000", "1000"),                    # digit-comma-digit: every mark deleted
    ("red, 1,000", "red 1000"),
    ("two", "2"),
    ("None", "0"),
    ("ten dogs", "10 dogs"),
    ("the dog", "dog"),
    ("A cat and an apple", "cat and apple"),
    ("dont", "don't"),
    ("isnt", "isn't"),
    ("couldnt've", "couldn't've"),        # one apostrophe missing: restored
    ("couldntve", "couldntve"),           # both missing: not in the official table
    ("somebody'd", "somebodyd"),          # the official table's reversed entry
    ("Dog.", "dog"),                      # period not followed by a digit: stripped
    ("3.5", "3.5"),                       # period before a digit: kept
    ("st. louis", "st louis"),
    ("dog's", "dog's"),                   # apostrophes are not punctuation here
    ("10:30", "10:30"),                   # nor are colons
    ("  yes\n", "yes"),
    ("yes\tplease", "yes please"),
    ("t-shirt", "t shirt"),
    ("(left)", "left"),                   # "(" / ")" -> spaces, then whitespace split
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_answer_strips_at_most_32_periods():
    # the official code passes re.UNICODE (32) as the ``count`` of its period substitution
    assert normalize_answer("x" + "." * 40) == "x" + "." * 8


@pytest.mark.parametrize("matches, expected", [
    (0, 0.0),
    (1, 0.3),        # 9 subsets hold the match: (9 * 1/3 + 1 * 0) / 10
    (2, 0.6),        # (8 * 2/3 + 2 * 1/3) / 10
    (3, 0.9),        # (7 * 1 + 3 * 2/3) / 10
    (4, 1.0),        # every subset keeps >= 3 matches
    (10, 1.0),
])
def test_vqa_accuracy_leave_one_out(matches, expected):
    humans = ["cat"] * matches + ["dog", "bird", "fish", "cow", "pig", "hen", "ant", "bee",
                                  "owl", "elk"][: 10 - matches]
    assert vqa_accuracy("cat", humans) == pytest.approx(expected)


def test_vqa_accuracy_normalises_when_humans_disagree():
    humans = ["2", "2", "two", "Two ", "3", "3", "3", "3", "3", "3"]  # 4 x "2" after normalising
    assert vqa_accuracy("two", humans) == pytest.approx(1.0)
    assert vqa_accuracy("The 2.", humans) == pytest.approx(1.0)
    humans = ["the dog", "dog", "a dog", "cat", "cat", "cat", "cat", "cat", "cat", "cat"]
    assert vqa_accuracy("Dog!", humans) == pytest.approx(0.9)


def test_vqa_accuracy_no_normalisation_when_humans_agree():
    # official behaviour: unanimous answers are compared verbatim (after whitespace strip)
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("two", ["2"] * 10) == 0.0
    assert vqa_accuracy("the dog", ["dog"] * 10) == 0.0
    # the same answers with one dissenter are normalised, so those predictions count
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_accuracy("two", ["2"] * 9 + ["3"]) == 1.0


def test_vqa_accuracy_fewer_answers():
    # 3 answers, 2 match: subsets of 2 hold 1, 1 and 2 matches -> (1/3 + 1/3 + 2/3) / 3
    assert vqa_accuracy("red", ["red", "red", "blue"]) == pytest.approx(4 / 9)
    assert vqa_accuracy("red", ["red"]) == 0.0  # the only subset is empty


def test_mean_vqa_accuracy():
    preds = ["cat", "no", "2"]
    humans = [["cat"] * 2 + ["dog"] * 8, ["yes"] * 10, ["two"] * 5 + ["2"] * 5]
    assert mean_vqa_accuracy(preds, humans) == pytest.approx((0.6 + 0.0 + 1.0) / 3)


@pytest.mark.parametrize("call", [
    lambda: vqa_accuracy("yes", []),
    lambda: vqa_accuracy("yes", "yes"),
    lambda: vqa_accuracy(3, ["yes"]),
    lambda: vqa_accuracy("yes", ["yes", None]),
    lambda: mean_vqa_accuracy(["yes"], [["yes"], ["no"]]),
    lambda: mean_vqa_accuracy([], []),
    lambda: normalize_answer(None),
])
def test_vqa_input_errors(call):
    with pytest.raises(InputError):
        call()
