"""Image classification (ImageNet fine-tune): score every class name as a caption of the image,
ImageNet mean/std, decoder prompt = BOS only."""

from __future__ import annotations

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import Example, Task

PROMPT = " what does the image describe?"


class ClassificationTask(Task):
    name = "classify"
    summary = "Rank class names for an image"
    kind = "score"
    # only the ImageNet fine-tune used --imagenet-default-mean-and-std; all else maps to [-1, 1]
    preprocess = PreprocessCfg(480, IMAGENET_MEAN, IMAGENET_STD)
    primary_metric = "acc"
    result_key = "label"
    record_fields = ("image", "label")
    default_model = "ofa-large-imagenet"
    demo = True

    def prepare(self, tokenizer: OFATokenizer, label: str) -> Example:
        return Example(label, tokenizer.encode(PROMPT))

    def one_line(self, result: dict) -> str:
        return ", ".join(f"{name} ({score:.3f})" for name, score in result["topk"])
