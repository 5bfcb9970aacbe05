"""Text summarisation (Gigaword): text only, beam 6, at most 32 tokens, lenpen 0.7."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..tokenizer import OFATokenizer
from ..tokenizer_cn import AnyTokenizer
from .base import MAX_ARTICLE_CHARS, Example, Task, TaskField, answer_tokens, record_weight
from .text import require_text

PROMPT = ' what is the summary of article " {} "?'
MAX_SOURCE_WORDS = 512


class SummarizationTask(Task):
    name = "summarize"
    summary = "Summarise an article (text only)"
    image = "none"
    fields = (TaskField("text", "the article", required=True, max_chars=MAX_ARTICLE_CHARS,
                        record="source"),)
    outputs = {"summary": (str, "the summary")}
    primary_metric = "rougeL"
    result_key = "summary"
    record_fields = ("source", "summary")
    default_model = "ofa-large-gigaword"

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        return GenerationConfig(beam_size=6, max_len_b=32, min_len=1, no_repeat_ngram_size=3,
                                lenpen=0.7)

    def prepare(self, tokenizer: OFATokenizer, label: str, text: str = "") -> Example:
        words = require_text(text, "article").lower().split()[:MAX_SOURCE_WORDS]
        return Example(label, tokenizer.encode(PROMPT.format(" ".join(words))))

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        return {"summary": tokenizer.decode(answer_tokens(example, hyp)).strip()}

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        # the official Gigaword post-processing of hypotheses, then ROUGE F1
        from ..metrics import gigaword_postprocess, rouge_scores

        return rouge_scores([gigaword_postprocess(p or "") for p in predictions],
                            [r["summary"] for r in records]), {}

    def target_text(self, record: dict) -> tuple[str, float]:
        return " " + record["summary"].strip().lower(), record_weight(record)
