"""Image classification (ImageNet fine-tune): score every class name as a caption of the image,
ImageNet mean/std, decoder prompt = BOS only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import MAX_ITEM_CHARS, Example, Task, TaskField, record_weight

PROMPT = " what does the image describe?"
DEFAULT_TOPK = 5


class ClassificationTask(Task):
    name = "classify"
    summary = "Rank class names for an image"
    kind = "score"
    # only the ImageNet fine-tune used --imagenet-default-mean-and-std; all else maps to [-1, 1]
    preprocess = PreprocessCfg(480, IMAGENET_MEAN, IMAGENET_STD)
    fields = (
        TaskField("classes", "class names to rank", kind="texts",
                  per_input=False, required=True, record="", max_chars=MAX_ITEM_CHARS),
        TaskField("topk", f"classes to report (default: {DEFAULT_TOPK})", kind="int",
                  per_input=False, default=DEFAULT_TOPK, record=""),
    )
    outputs = {"label": (str, "the best class"),
               "topk": (list[dict[str, Any]], "the best classes, best first: {label, score}")}
    primary_metric = "acc"
    result_key = "label"
    record_fields = ("image", "label")
    default_model = "ofa-large-imagenet"
    demo = True

    def __init__(self, classes: Sequence[str] = (), topk: int = DEFAULT_TOPK) -> None:
        self.classes = list(classes)
        self.topk = topk

    def configure(self, model_task: str | None = None, *, classes: Sequence[str] | None = None,
                  topk: int | None = None) -> ClassificationTask:
        if not classes or isinstance(classes, str) or not all(isinstance(c, str)
                                                              for c in classes):
            raise InputError("classes must be a non-empty list of names")
        topk = DEFAULT_TOPK if topk is None else topk
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise InputError(f"topk must be a positive integer, got {topk!r}")
        return ClassificationTask(classes, topk)

    def candidates(self) -> list[str]:
        return self.classes

    def prepare(self, tokenizer: OFATokenizer, label: str) -> Example:
        return Example(label, tokenizer.encode(PROMPT))

    def result_from_scores(self, example: Example, scores: dict[str, float]) -> dict:
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:self.topk]
        return {"label": ranked[0][0],
                "topk": [{"label": name, "score": score} for name, score in ranked]}

    def one_line(self, result: dict) -> str:
        return ", ".join(f"{c['label']} ({c['score']:.3f})" for c in result["topk"])

    def eval_options(self, records: Sequence[dict], given: dict[str, Any]) -> dict[str, Any]:
        # default candidates: every label of the records
        classes = given.get("classes") or sorted({r["label"] for r in records})
        return {"classes": list(classes)}

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import accuracy

        return {"acc": accuracy(list(predictions), [r["label"] for r in records])}, {}

    def target_text(self, record: dict) -> tuple[str, float]:
        return " " + record["label"].strip(), record_weight(record)
