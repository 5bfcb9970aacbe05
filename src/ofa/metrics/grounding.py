"""Visual grounding: a prediction is correct when its IoU with the reference box is >= 0.5."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

Box = Sequence[float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 for degenerate ones)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def grounding_accuracy(predictions: Sequence[Box | None], references: Sequence[Box],
                       threshold: float = 0.5) -> float:
    """Acc@threshold; a missing prediction (None) counts as wrong."""
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise InputError("no boxes to score")
    hits = sum(p is not None and box_iou(p, r) >= threshold
               for p, r in zip(predictions, references, strict=True))
    return hits / len(predictions)
