"""Official VQA accuracy (the rules of the VQA API's ``vqaEval.py``, current GitHub master).

A prediction scores ``min(1, matches / 3)`` against each leave-one-out subset of the N
(usually 10) human answers, averaged over the N subsets, so it reproduces the leaderboard
figure only when the answer normalisation matches the official one bit for bit. That is why the
rules below keep the official quirks (documented where they occur) instead of "fixing" them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import InputError

# Marks removed, or turned into a space, by the punctuation step. Apostrophes, colons and
# periods are not in the list (periods have their own rule below).
_PUNCTUATION = ";/[]\"{}()=+\\_-><@`,?!"
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The official code passes ``re.UNICODE`` (== 32) where ``Pattern.sub`` expects ``count``, so
# at most 32 periods are stripped from one answer. Kept for parity.
_MAX_PERIODS_STRIPPED = 32

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})


def _contraction_table() -> dict[str, str]:
    """Apostrophe-less spellings mapped to the contraction the official table gives them.

    The official table lists, for every contraction below, exactly the spellings that miss one
    of its apostrophes ("couldnt've" and "couldn'tve", but not "couldntve"). Its entries that
    start with a capital "I" are left out: answers are lowercased first, so they never match.
    """
    contracted = (
        "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't "
        "hadn't've hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've "
        "it'll ma'am mightn't mightn't've might've mustn't must've needn't not've o'clock "
        "oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've "
        "somebody'll somebody's someone'd someone'd've someone'll someone's something'd "
        "something'd've something'll that's there'd there'd've there're there's they'd "
        "they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're "
        "what's what've when's where'd where's where've who'd who'd've who'll who's who've "
        "why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've "
        "you'd you'd've you'll you're you've"
    ).split()
    table: dict[str, str] = {}
    for word in contracted:
        for i, ch in enumerate(word):
            if ch == "'":
                table[word[:i] + word[i + 1:]] = word
    # an official entry that runs the other way; it does change such answers, so keep it
    table["somebody'd"] = "somebodyd"
    return table


_CONTRACTIONS = _contraction_table()


def _process_punctuation(text: str) -> str:
    """The official punctuation step.

    Each mark is deleted when it touches a space anywhere in the answer (or when the answer
    contains a digit-comma-digit such as "1,000", which deletes every mark); otherwise it is
    replaced by a space ("black/white" -> "black white"). Then every period not followed by a
    digit is deleted ("3.5" keeps its period, "st." loses it).
    """
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        # the official test looks at the original answer, not the partly processed one
        touches_space = mark + " " in text or " " + mark in text
        out = out.replace(mark, "" if delete_all or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_MAX_PERIODS_STRIPPED)


def _process_digits_articles(text: str) -> str:
    """Lowercase, number words to digits, drop articles, restore contractions."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The official answer normalisation: whitespace cleanup, punctuation, then lowercase,
    number words to digits ("two" -> "2", "none" -> "0"), articles dropped, contractions
    restored ("dont" -> "don't")."""
    if not isinstance(text, str):
        raise InputError(f"an answer must be a string, got {type(text).__name__}")
    return _process_digits_articles(_process_punctuation(_clean_whitespace(text)))


def _check_answers(human_answers: Sequence[str]) -> list[str]:
    if isinstance(human_answers, str):
        raise InputError("human_answers must be a list of answers, not a single string")
    answers = list(human_answers)
    if not answers:
        raise InputError("a question needs at least one human answer")
    for a in answers:
        if not isinstance(a, str):
            raise InputError(f"human answers must be strings, got {type(a).__name__}")
    return answers


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Official accuracy of one predicted answer, in [0, 1].

    For each human answer, the other N-1 are a subset; the prediction scores
    ``min(1, matches / 3)`` on it, and the N subset scores are averaged. So 2 matches out of 10
    give 0.6 and 3 give 0.9; 4 or more give 1.

    As in the official code, answers and prediction are only normalised when the humans do not
    all give the same (whitespace-stripped) answer; when they agree, the raw strings must match
    exactly, case included (the VQA authors did this so that OCR-style answers stay verbatim).
    Older releases of ``vqaEval.py`` always normalised the prediction and only
    punctuation-processed the human answers; the current master behaves as implemented here.
    """
    if not isinstance(prediction, str):
        raise InputError(f"the prediction must be a string, got {type(prediction).__name__}")
    answers = [_clean_whitespace(a) for a in _check_answers(human_answers)]
    pred = _clean_whitespace(prediction)
    if len(set(answers)) > 1:
        answers = [normalize_answer(a) for a in answers]
        pred = normalize_answer(pred)
    matches = [a == pred for a in answers]
    total = sum(matches)
    # leaving answer i out removes one match exactly when answer i itself matches
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(answers)


def mean_vqa_accuracy(predictions: Sequence[str],
                      human_answers: Sequence[Sequence[str]]) -> float:
    """Mean official VQA accuracy over questions, in [0, 1] (the leaderboard figure / 100)."""
    if len(predictions) != len(human_answers):
        raise InputError(f"{len(predictions)} predictions for {len(human_answers)} questions")
    if not predictions:
        raise InputError("nothing to score")
    return sum(vqa_accuracy(p, a)
               for p, a in zip(predictions, human_answers, strict=True)) / len(predictions)
