"""Task metrics: caption BLEU/CIDEr (pycocoevalcap), grounding Acc@0.5, answer accuracies."""

from .accuracy import accuracy, vqa_score
from .caption import caption_scores
from .grounding import box_iou, grounding_accuracy

__all__ = ["accuracy", "box_iou", "caption_scores", "grounding_accuracy", "vqa_score"]
