"""Caption metrics through pycocoevalcap (the scorers of the COCO caption evaluation)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from ..errors import InputError
from ..tasks.text import pre_caption, strip_punctuation


def _tokens(text: str) -> str:
    # stands in for the PTB tokenizer (Java) on plain lowercase text: same words, no punctuation
    return strip_punctuation(pre_caption(text))


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]
                   ) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr-D of ``predictions`` against lists of reference captions."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise InputError("no captions to score")
    res = {i: [_tokens(p) or "<empty>"] for i, p in enumerate(predictions)}
    gts = {i: [_tokens(r) for r in refs] for i, refs in enumerate(references)}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print their progress
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu{n}": float(b) for n, b in enumerate(bleu, 1)}
    scores["cider"] = float(cider)
    return scores
