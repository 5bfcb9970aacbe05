"""Exact-answer accuracies (entailment, classification) and a VQA score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError


def accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
    if len(predictions) != len(labels):
        raise InputError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not predictions:
        raise InputError("nothing to score")
    return sum(p == t for p, t in zip(predictions, labels, strict=True)) / len(labels)


def vqa_score(predictions: Sequence[str], answers: Sequence[Mapping[str, float]]) -> float:
    """Mean confidence of the predicted answer (capped at 1), the score the VQA fine-tuning
    validates with; exact string match after stripping surrounding whitespace."""
    if len(predictions) != len(answers):
        raise InputError(f"{len(predictions)} predictions for {len(answers)} answer sets")
    if not predictions:
        raise InputError("nothing to score")
    return sum(min(1.0, float(a.get(p.strip(), 0.0)))
               for p, a in zip(predictions, answers, strict=True)) / len(answers)
