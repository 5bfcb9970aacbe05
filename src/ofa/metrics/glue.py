"""The official GLUE metric of each dataset, through scikit-learn: accuracy (SST-2, RTE, QNLI,
MNLI), F1 of the positive class and accuracy (MRPC, QQP), Matthews correlation (CoLA).

OFA logs the same figures in its validation (OFA-Sys/OFA tasks/nlu_tasks/mrpc.py and qqp.py:
``acc`` and ``F1`` of "yes"; cola.py: ``mcc``)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError


def _sklearn_metrics():
    try:
        from sklearn import metrics
    except ImportError:  # an optional dependency: only GLUE scoring needs it
        raise InputError("GLUE metrics need scikit-learn: pip install 'ofa-vl[glue]'") from None
    return metrics


def glue_metrics(predictions: Sequence[str], references: Sequence[str], kinds: Sequence[str],
                 positive: str = "yes") -> dict[str, float]:
    """``{kind: value}`` for each of ``kinds`` (``acc``, ``f1``, ``mcc``) of ``predictions``
    against ``references`` (label words, aligned). ``f1`` is the F1 of the ``positive`` label.
    A prediction outside the reference labels (a failed input) simply counts as wrong."""
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return {}
    metrics = _sklearn_metrics()
    preds, refs = list(predictions), list(references)
    out: dict[str, float] = {}
    for kind in kinds:
        if kind == "acc":
            out[kind] = float(metrics.accuracy_score(refs, preds))
        elif kind == "f1":
            # the positive class alone (binary F1), whatever else the predictions hold
            out[kind] = float(metrics.f1_score(refs, preds, labels=[positive], average="micro",
                                               zero_division=0.0))
        elif kind == "mcc":
            out[kind] = float(metrics.matthews_corrcoef(refs, preds))
        else:
            raise ValueError(f"unknown GLUE metric {kind!r}")
    return out
