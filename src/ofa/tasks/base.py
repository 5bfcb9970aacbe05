"""What every task module provides: a prompt builder, official decoding settings and
post-processing, around one prepared input (:class:`Example`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import OFA_MEAN, OFA_STD
from ..tokenizer import OFATokenizer


@dataclass
class Example:
    """One input ready for the model. ``prefix`` are decoder tokens forced after BOS (the
    official ``prev_output`` prompt); ``info`` carries what post-processing needs."""

    input: str
    source: list[int]
    image: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None  # original (width, height)
    prefix: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class Task:
    """Base of the task modules. Subclasses set the class attributes and override
    :meth:`generation_config`, :meth:`prepare` and :meth:`result`."""

    name: str = ""
    image_size: int | None = None  # official patch_image_size; None: text-only task
    mean: tuple[float, float, float] = OFA_MEAN
    std: tuple[float, float, float] = OFA_STD

    def generation_config(self, model_config: OFAConfig) -> GenerationConfig:
        return GenerationConfig()

    def prepare(self, tokenizer: OFATokenizer, label: str, **fields) -> Example:
        raise NotImplementedError

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        raise NotImplementedError


def answer_tokens(example: Example, hyp: Hypothesis) -> list[int]:
    """Generated ids after the forced prefix, without the final EOS."""
    tokens = hyp.tokens.tolist()[len(example.prefix):]
    return tokens[:-1] if tokens and tokens[-1] == 2 else tokens
