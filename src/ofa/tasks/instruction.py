"""A free instruction: any prompt, with or without an image, decoded as text."""

from __future__ import annotations

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from ..tokenizer_cn import AnyTokenizer
from .base import Example, Task, TaskField, answer_tokens
from .text import require_text


class InstructionTask(Task):
    name = "generate"
    summary = "Follow a free instruction, with or without an image"
    image = "optional"
    preprocess = PreprocessCfg(480)
    fields = (TaskField("prompt", "the instruction, e.g. ' what is in the image?'",
                        required=True, short="p"),)
    outputs = {"prompt": (str, "the instruction as the model read it"),
               "text": (str, "the generated text")}
    result_key = "text"
    default_model = "ofa-base"

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        return GenerationConfig(beam_size=5, max_len_b=32, min_len=1, no_repeat_ngram_size=3)

    def prepare(self, tokenizer: OFATokenizer, label: str, prompt: str = "") -> Example:
        text = require_text(prompt, "prompt")
        if not text.startswith(" "):
            text = " " + text  # every OFA instruction starts with a space
        return Example(label, tokenizer.encode(text), info={"prompt": text})

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        return {"prompt": example.info["prompt"],
                "text": tokenizer.decode(answer_tokens(example, hyp)).strip()}
