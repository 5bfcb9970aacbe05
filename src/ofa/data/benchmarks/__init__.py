"""Readers of the published evaluation sets as they come from their sources (COCO captions,
VQAv2, RefCOCO/+/g, SNLI-VE, ImageNet-style folders, Gigaword, OFA's TSV files, OFA's
text-to-image captions): one module per dataset, ``common`` for what they share, and
:func:`read_eval_data`, which picks the reader from the task and the path (``sets``; the
text-to-image task goes to ``imagegen``). Importing them loads no image renderer and no
model."""

from __future__ import annotations

import os

from .imagegen import IMAGINE_TASKS, read_imagegen
from .sets import TASK_ALIASES, EvalData, resolve_task
from .sets import read_eval_data as _read_eval_data

__all__ = ["IMAGINE_TASKS", "TASK_ALIASES", "EvalData", "read_eval_data", "resolve_task"]


def read_eval_data(task: str, data: str | os.PathLike[str], *, split: str | None = None,
                   images: str | os.PathLike[str] | None = None,
                   annotations: str | os.PathLike[str] | None = None,
                   class_names: str | os.PathLike[str] | None = None,
                   glue_dataset: str | None = None) -> EvalData:
    """Records of the evaluation set at ``data`` for ``task``: see
    :func:`ofa.data.benchmarks.sets.read_eval_data`; the text-to-image task (``imagine``, or
    the official name ``image_gen``) reads OFA's ``coco_vqgan_*.tsv`` captions
    (:func:`ofa.data.benchmarks.imagegen.read_imagegen`; ``images`` is then the folder of
    reference images for FID); ``glue_dataset`` names a GLUE file's dataset."""
    if isinstance(task, str) and task.strip().lower() in IMAGINE_TASKS:
        return read_imagegen(data, split=split, images=images, annotations=annotations,
                             class_names=class_names)
    return _read_eval_data(task, data, split=split, images=images, annotations=annotations,
                           class_names=class_names, glue_dataset=glue_dataset)
