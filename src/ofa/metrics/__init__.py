"""Task metrics: caption BLEU/METEOR/ROUGE-L/CIDEr/SPICE (pycocoevalcap), grounding Acc@0.5,
answer accuracies, the official VQA accuracy and Gigaword ROUGE."""

from .accuracy import accuracy, vqa_score
from .caption import (
    CAPTION_METRICS,
    FAST_CAPTION_METRICS,
    CaptionReport,
    caption_metrics_unavailable,
    caption_report,
    caption_scores,
    ptb_tokenize,
)
from .grounding import box_iou, grounding_accuracy
from .rouge import fix_tokenization, gigaword_postprocess, rouge_scores
from .vqa import mean_vqa_accuracy, normalize_answer, vqa_accuracy

__all__ = [
    "CAPTION_METRICS",
    "FAST_CAPTION_METRICS",
    "CaptionReport",
    "accuracy",
    "box_iou",
    "caption_metrics_unavailable",
    "caption_report",
    "caption_scores",
    "fix_tokenization",
    "gigaword_postprocess",
    "grounding_accuracy",
    "mean_vqa_accuracy",
    "normalize_answer",
    "ptb_tokenize",
    "rouge_scores",
    "vqa_accuracy",
    "vqa_score",
]
