"""Readers of the published evaluation sets as they come from their sources (COCO captions,
VQAv2, RefCOCO/+/g, SNLI-VE, ImageNet-style folders, Gigaword, OFA's TSV files): one module per
dataset, ``common`` for what they share, and :func:`read_eval_data` (``sets``), which picks the
reader from the task and the path. Importing them loads no image renderer and no model."""

from .sets import TASK_ALIASES, EvalData, read_eval_data, resolve_task

__all__ = ["TASK_ALIASES", "EvalData", "read_eval_data", "resolve_task"]
