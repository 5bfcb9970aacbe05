"""Runs one group of same-task, same-option requests through the :class:`ofa.OFA` API.

Called in the batcher's worker thread. One list call per group (``ofa.run("caption",
[img1, img2, ...], batch_size=n)``) is what makes batching pay. A bad input must not sink its
companions: per-input errors come back as ``{"error": ...}`` (``errors="return"``), and if
the whole call is refused (an option the model cannot honour, a text too long for the
encoder), each request is retried alone so only the faulty ones get the error. Decoding steps
and candidate chunks call the batcher's :func:`checkpoint`, so a long call lets other
batches run and stops once nobody waits for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError, OFAError
from ..generate import on_checkpoint
from ..tasks import TASKS
from .batching import checkpoint
from .endpoints import with_defaults


class ModelBusyError(Exception):
    """The device ran out of memory for this batch: a transient overload, not a bad input."""


@dataclass
class Payload:
    """One request: its decoded image (or None) and its task fields."""

    image: Any
    fields: dict


class ModelRunner:
    """``runner(task, options, payloads)`` -> one result dict or :class:`OFAError` each.

    ``defaults``: per task, server-wide values of options a request leaves unset (e.g.
    ``{"vqa": {"answers": [...]}}``, the answer list of ``--vqa-answers``)."""

    def __init__(self, ofa: Any, defaults: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> None:
        self.ofa = ofa
        self.defaults = {task: dict(d) for task, d in (defaults or {}).items()}

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
        spec = TASKS[task]
        options = with_defaults(dict(options), self.defaults.get(task))
        decoding = options.pop("decoding", {})
        with_image = options.pop("with_image", True)  # set for tasks whose image is optional
        images = ([p.image for p in payloads]
                  if spec.image != "none" and with_image else None)
        columns = {}
        for f in spec.input_fields:
            values = [p.fields.get(f.name) for p in payloads]
            if all(v is None for v in values):
                continue
            if f.kind == "texts":
                # the API reads a list of lists as one list per input only when the first
                # is a list: an absent list is an empty one
                values = [[] if v is None else list(v) for v in values]
            columns[f.name] = values
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
        # a drawing task runs its inputs one by one: its batch is the samples of each
        batch = {} if spec.kind == "draw" else {"batch_size": len(payloads)}
        results = self.ofa.run(task, images, errors="return", **batch, **columns, **options,
                               **decoding)
        return [results] if isinstance(results, dict) else results
