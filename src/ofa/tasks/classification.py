"""Image classification (ImageNet fine-tune): score every class name as a caption of the image,
ImageNet mean/std, decoder prompt = BOS only."""

from __future__ import annotations

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, TASK_IMAGE_SIZES
from ..tokenizer import OFATokenizer
from .base import Example, Task

PROMPT = " what does the image describe?"


class ClassificationTask(Task):
    name = "classify"
    image_size = TASK_IMAGE_SIZES["classification"]
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def prepare(self, tokenizer: OFATokenizer, label: str) -> Example:
        return Example(label, tokenizer.encode(PROMPT))
