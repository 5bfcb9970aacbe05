"""OFA tasks: one module each, a prompt builder + official decoding settings + post-processing."""

from .base import Example, Task
from .caption import CaptionTask
from .classification import ClassificationTask
from .entailment import EntailmentTask
from .grounding import GroundingTask
from .instruction import InstructionTask
from .summarization import SummarizationTask
from .text import pre_caption, pre_question, strip_punctuation
from .vqa import VQATask

__all__ = ["Example", "Task", "CaptionTask", "VQATask", "GroundingTask", "EntailmentTask",
           "ClassificationTask", "SummarizationTask", "InstructionTask", "pre_caption",
           "pre_question", "strip_punctuation"]
