"""What every task module provides: a prompt builder, official decoding settings and
post-processing, around one prepared input (:class:`Example`), and the facts the layers
(CLI, server, evaluation, training) read from the task table instead of re-deriving them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
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

    name: str = ""  # the one name of the task: API method, CLI command, route, record "task"
    summary: str = ""  # one line, for help texts and the server's endpoint list
    kind: str = "generate"  # "generate" (decode text) or "score" (rank fixed candidates)
    preprocess: PreprocessCfg | None = None  # None: a text-only task
    primary_metric: str | None = None  # the figure the task is published by (eval, keep-best)
    result_key: str = ""  # the field of a result that holds the answer
    record_fields: tuple[str, ...] = ()  # what a data record must hold; () = no records
    default_model: str = ""  # registry name used when no model is given
    demo: bool = False  # the embedded shapes-demo model was trained for it

    @property
    def image_size(self) -> int | None:
        """The official input size, or None for a text-only task."""
        return None if self.preprocess is None else self.preprocess.size

    def one_line(self, result: dict) -> str:
        """The answer of ``result`` as one line of text (the CLI's plain output)."""
        return str(result[self.result_key])

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
