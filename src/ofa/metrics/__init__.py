"""Task metrics: caption BLEU/METEOR/ROUGE-L/CIDEr/SPICE (pycocoevalcap), grounding Acc@0.5,
answer accuracies, the official VQA accuracy, Gigaword ROUGE and OCR line accuracy / NED."""

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
from .ocr import normalize_ocr_text, ocr_scores
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
    "normalize_ocr_text",
    "ocr_scores",
    "ptb_tokenize",
    "rouge_scores",
    "vqa_accuracy",
    "vqa_score",
]
