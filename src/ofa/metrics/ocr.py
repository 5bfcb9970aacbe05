"""Text recognition metrics as OFA-OCR reports them (OFA-Sys/OFA tasks/mm_tasks/ocr.py,
utils/eval_utils.py ``eval_ocr``): line accuracy (exact match) and the normalised edit
distance, both after removing every space from hypothesis and reference."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

__all__ = ["normalize_ocr_text", "ocr_scores"]


def normalize_ocr_text(text: str) -> str:
    """What is compared: NFKC (full-width to half-width, as the official labels are), lower
    case, no spaces. The official labels are also converted from traditional to simplified
    Chinese; that is left to the data (no maintained converter is a dependency here)."""
    return unicodedata.normalize("NFKC", text).lower().replace(" ", "")


def ocr_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``acc``: share of lines read exactly; ``ned``: mean of 1 - Levenshtein distance /
    the longer length (1 for two empty lines), the official validation's NED."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {"acc": 0.0, "ned": 0.0}
    hyps = [normalize_ocr_text(p) for p in predictions]
    refs = [normalize_ocr_text(r) for r in references]
    acc = sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs)
    ned = sum(Levenshtein.normalized_similarity(h, r) for h, r in zip(hyps, refs, strict=True))
    return {"acc": acc, "ned": ned / len(refs)}
