"""Run a model over records (the JSONL format of :mod:`ofa.data.records`) and score it with
each task's metric. Training's validation and ``ofa eval`` both call :func:`evaluate_records`,
so the two report the same figures."""

from __future__ import annotations

from collections.abc import Sequence

from .api import OFA
from .data.records import TASK_NAMES, answers_of, references
from .errors import InputError
from .metrics import accuracy, caption_scores, grounding_accuracy, vqa_score


def evaluate_records(ofa: OFA, records: Sequence[dict], *,
                     vqa_answers: Sequence[str] | None = None,
                     class_names: Sequence[str] | None = None, batch_size: int = 32,
                     progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """Metrics (``"task/metric"`` keys) and one prediction dict per record.

    VQA decodes with beam search constrained to ``vqa_answers`` when given (the fine-tuned
    setting). Classification ranks ``class_names`` (default: every label in ``records``).
    """
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    unknown = sorted(set(by_task) - set(TASK_NAMES))
    if unknown:
        raise InputError(f"unknown tasks in records: {unknown}")
    metrics: dict[str, float] = {}
    predictions: list[dict] = []
    opts = {"batch_size": batch_size, "progress": progress}

    def add(task: str, recs: list[dict], outs: list[dict], pred_key: str) -> list:
        preds = [o.get(pred_key) for o in outs]
        predictions.extend({"id": r.get("id"), "task": task, "prediction": p}
                           for r, p in zip(recs, preds, strict=True))
        return preds

    if recs := by_task.get("caption"):
        outs = ofa.caption([r["image"] for r in recs], **opts)
        preds = add("caption", recs, outs, "caption")
        for k, v in caption_scores(preds, [references(r) for r in recs]).items():
            metrics[f"caption/{k}"] = v
    if recs := by_task.get("vqa"):
        outs = ofa.vqa([r["image"] for r in recs], [r["question"] for r in recs],
                       answers=list(vqa_answers) if vqa_answers else None, **opts)
        preds = add("vqa", recs, outs, "answer")
        metrics["vqa/acc"] = vqa_score(preds, [answers_of(r) for r in recs])
    if recs := by_task.get("ground"):
        outs = ofa.ground([r["image"] for r in recs], [r["text"] for r in recs], **opts)
        preds = add("ground", recs, outs, "box")
        metrics["ground/acc@0.5"] = grounding_accuracy(preds, [r["box"] for r in recs])
    if recs := by_task.get("entail"):
        outs = ofa.entail([r["image"] for r in recs], [r["hypothesis"] for r in recs],
                          premises=[r.get("premise") for r in recs], **opts)
        preds = add("entail", recs, outs, "label")
        metrics["entail/acc"] = accuracy(preds, [r["label"] for r in recs])
    if recs := by_task.get("classify"):
        names = list(class_names) if class_names else sorted({r["label"] for r in recs})
        outs = ofa.classify([r["image"] for r in recs], names, **opts)
        preds = add("classify", recs, outs, "label")
        metrics["classify/acc"] = accuracy(preds, [r["label"] for r in recs])
    if recs := by_task.get("summarize"):
        outs = ofa.summarize([r["source"] for r in recs], **opts)
        preds = add("summarize", recs, outs, "summary")
        scores = caption_scores(preds, [[r["summary"]] for r in recs])
        metrics["summarize/bleu4"] = scores["bleu4"]
    return metrics, predictions
