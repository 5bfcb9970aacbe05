"""Image captioning: ``" what does the image describe?"``, beam 5, at most 16 tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import Example, Task, TaskField, answer_tokens, record_weight
from .text import pre_caption, strip_punctuation

PROMPT = " what does the image describe?"
MAX_TARGET_WORDS = 20  # official caption --max-tgt-length


def references(record: dict) -> list[str]:
    """A caption record's reference captions."""
    refs = record["caption"]
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip()
                                                         for r in refs):
        raise InputError("caption must be a non-empty string or list of strings")
    return refs


class CaptionTask(Task):
    name = "caption"
    summary = "Caption an image"
    preprocess = PreprocessCfg(480)
    fields = (TaskField("prompt", "instruction to use instead of the official prompt",
                        record=""),)
    outputs = {"caption": (str, "the caption, punctuation stripped as the official "
                                "evaluation does")}
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

    def check_record(self, record: dict) -> None:
        references(record)

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import CAPTION_METRICS, FAST_CAPTION_METRICS, caption_report

        report = caption_report([p or "" for p in predictions], [references(r) for r in records],
                                metrics=CAPTION_METRICS if full else FAST_CAPTION_METRICS)
        notes = {k: f"not computed: {v}" for k, v in report.skipped.items()}
        notes.update({f"tokenizer{i}": n for i, n in enumerate(report.notes)})
        return report.scores, notes

    def target_text(self, record: dict) -> tuple[str, float]:
        caption = references(record)[0]
        return " " + strip_punctuation(pre_caption(caption, MAX_TARGET_WORDS)), \
            record_weight(record)
