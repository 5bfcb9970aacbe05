"""OFA tasks: one module each (a prompt builder + official decoding settings +
post-processing), and :data:`TASKS`, the table the CLI, the server, evaluation and training
read: one entry per task, under the one name it has everywhere."""

from ..errors import InputError
from ..preprocess import PreprocessCfg
from .base import Example, Task, TaskField
from .caption import CaptionTask
from .classification import ClassificationTask
from .entailment import EntailmentTask
from .glue import GlueTask
from .grounding import GroundingTask
from .imagine import ImagineTask
from .instruction import InstructionTask
from .ocr import OCRTask
from .summarization import SummarizationTask
from .text import pre_caption, pre_question, strip_punctuation
from .vqa import VQATask

# Shared, read-only instances with their default options (tasks that take options, such as
# VQATask(zero_shot=True), are built anew where those are given).
TASKS: dict[str, Task] = {task.name: task for task in (
    CaptionTask(), VQATask(), GroundingTask(), EntailmentTask(), ClassificationTask(),
    SummarizationTask(), InstructionTask(), ImagineTask(), OCRTask(), GlueTask())}


def get_task(name: str) -> Task:
    """The table's entry for ``name``; an InputError listing the tasks otherwise."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return task


__all__ = ["TASKS", "get_task", "Example", "PreprocessCfg", "Task", "TaskField", "CaptionTask",
           "VQATask", "GroundingTask", "EntailmentTask", "ClassificationTask", "SummarizationTask",
           "InstructionTask", "ImagineTask", "OCRTask", "pre_caption", "pre_question",
           "strip_punctuation"]
