"""What differs between the task endpoints, in one table: the request and result models,
whether an image is required, which request fields travel with each input, and how an API
result dict becomes the response body. Everything else (parsing, queueing, errors) is shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..tasks import TASKS
from . import schemas as s


def finite(x: Any) -> float | None:
    """JSON has no inf or NaN: a score of -inf (an impossible answer) becomes null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _scores(raw: dict) -> dict[str, float | None] | None:
    table = raw.get("scores")
    return None if table is None else {k: finite(v) for k, v in table.items()}


def _box(raw: dict) -> list[float] | None:
    box = raw.get("box")
    if box is None or not all(math.isfinite(float(v)) for v in box):
        return None
    return [round(float(v), 2) for v in box]


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the task's name in ofa.tasks.TASKS, which gives its summary
    request: type[BaseModel]
    result: type[BaseModel]
    image: str  # "required", "optional" or "none"
    fields: tuple[str, ...]  # request fields that travel with each input
    shape: Callable[[dict, tuple[int, int] | None], dict]  # API result -> response fields

    @property
    def path(self) -> str:
        return f"/v1/{self.name}"

    @property
    def summary(self) -> str:
        return TASKS[self.name].summary


SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("caption", s.CaptionRequest, s.CaptionResult, "required", (),
             lambda r, size: {"caption": r["caption"]}),
    TaskSpec("vqa", s.VQARequest, s.VQAResult, "required", ("question",),
             lambda r, size: {"question": r["question"], "answer": r["answer"],
                              "scores": _scores(r)}),
    TaskSpec("ground", s.GroundRequest, s.GroundResult, "required", ("text",),
             lambda r, size: {"text": r["text"], "box": _box(r), "image_size": list(size)}),
    TaskSpec("entail", s.EntailRequest, s.EntailResult, "required", ("hypothesis", "premise"),
             lambda r, size: {"hypothesis": r["hypothesis"], "answer": r["answer"],
                              "label": r["label"], "scores": _scores(r)}),
    TaskSpec("classify", s.ClassifyRequest, s.ClassifyResult, "required", (),
             lambda r, size: {"label": r["label"],
                              "topk": [{"label": n, "score": finite(v)} for n, v in r["topk"]]}),
    TaskSpec("summarize", s.SummarizeRequest, s.SummarizeResult, "none", ("text",),
             lambda r, size: {"summary": r["summary"]}),
    TaskSpec("generate", s.GenerateRequest, s.GenerateResult, "optional", ("prompt",),
             lambda r, size: {"prompt": r["prompt"], "text": r["text"]}),
)}
