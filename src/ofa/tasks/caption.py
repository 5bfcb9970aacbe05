"""Image captioning: ``" what does the image describe?"``, beam 5, at most 16 tokens."""

from __future__ import annotations

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import Example, Task, answer_tokens
from .text import strip_punctuation

PROMPT = " what does the image describe?"


class CaptionTask(Task):
    name = "caption"
    summary = "Caption an image"
    preprocess = PreprocessCfg(480)
    primary_metric = "cider"
    result_key = "caption"
    record_fields = ("image", "caption")
    default_model = "ofa-base-caption"
    demo = True

    def generation_config(self, model_config: OFAConfig) -> GenerationConfig:
        if model_config.name == "huge":  # evaluate_caption_huge: beam 10, lenpen/temp 0.98
            return GenerationConfig(beam_size=10, max_len_b=16, no_repeat_ngram_size=3,
                                    lenpen=0.98, temperature=0.98)
        return GenerationConfig(beam_size=5, max_len_b=16, min_len=1, no_repeat_ngram_size=3)

    def prepare(self, tokenizer: OFATokenizer, label: str, prompt: str = PROMPT) -> Example:
        return Example(label, tokenizer.encode(prompt))

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        # official evaluation strips punctuation from the decoded caption
        return {"caption": strip_punctuation(tokenizer.decode(answer_tokens(example, hyp)))}
