"""Runs one group of same-task, same-option requests through the :class:`ofa.OFA` API.

Called in the batcher's worker thread. One list call per group (``ofa.caption([img1,
img2, ...], batch_size=n)``) is what makes batching pay. A bad input must not sink its
companions: per-input errors come back as ``{"error": ...}`` (``errors="return"``), and if
the whole call is refused (an option the model cannot honour, a text too long for the
encoder), each request is retried alone so only the faulty ones get the error. Decoding steps
and candidate chunks call the batcher's :func:`checkpoint`, so a long call lets other
batches run and stops once nobody waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError, OFAError
from ..generate import on_checkpoint
from .batching import checkpoint


class ModelBusyError(Exception):
    """The device ran out of memory for this batch: a transient overload, not a bad input."""


@dataclass
class Payload:
    """One request: its decoded image (or None) and its task fields."""

    image: Any
    fields: dict


class ModelRunner:
    """``runner(task, options, payloads)`` -> one result dict or :class:`OFAError` each."""

    def __init__(self, ofa: Any, vqa_answers: Sequence[str] | None = None) -> None:
        self.ofa = ofa
        self.vqa_answers = list(vqa_answers) if vqa_answers else None

    def __call__(self, task: str, options: dict, payloads: list[Payload]) -> list[Any]:
        try:
            with torch.inference_mode(), on_checkpoint(checkpoint):
                try:
                    results = self._call(task, options, payloads)
                except OFAError as e:
                    if len(payloads) == 1:
                        return [e]
                    return [self(task, options, [p])[0] for p in payloads]
        except torch.OutOfMemoryError:
            raise ModelBusyError("the model ran out of device memory; retry later") from None
        return [InputError(r["error"]) if "error" in r else r for r in results]

    def _call(self, task: str, options: dict, payloads: list[Payload]) -> list[dict]:
        ofa, n = self.ofa, len(payloads)
        images = [p.image for p in payloads]
        common: dict[str, Any] = {"batch_size": n, "errors": "return"}
        decoding = options.get("decoding", {})

        def field(name: str) -> list:
            return [p.fields.get(name) for p in payloads]

        if task == "caption":
            return ofa.caption(images, **common, **decoding)
        if task == "vqa":
            answers = options.get("answers") or self.vqa_answers
            mode = options.get("mode") or "beam"
            return ofa.vqa(images, field("question"), answers=list(answers) if answers else None,
                           mode=mode, **common, **decoding)
        if task == "ground":
            return ofa.ground(images, field("text"), **common)
        if task == "entail":
            return ofa.entail(images, field("hypothesis"), premises=field("premise"), **common)
        if task == "classify":
            return ofa.classify(images, list(options["classes"]), topk=options["topk"],
                                **common)
        if task == "summarize":
            return ofa.summarize(field("text"), **common, **decoding)
        if task == "generate":
            with_images = images if options.get("with_image") else None
            return ofa.generate(field("prompt"), with_images, **common, **decoding)
        raise InputError(f"unknown task {task!r}")
