"""Image captioning: ``" what does the image describe?"``, beam 5, at most 16 tokens; the
Chinese checkpoints (MUGE): ``"图片描述了什么内容?"``, beam 8, at most 128 tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer_cn import AnyTokenizer
from .base import Example, Task, TaskField, answer_tokens, language, record_weight
from .text import join_chinese, pre_caption, split_cjk, strip_punctuation

PROMPT = " what does the image describe?"
PROMPT_ZH = "图片描述了什么内容?"  # OFA-Sys/OFA data/mm_data/caption_dataset.py (bpe=bert)
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
    languages = ("en", "zh")
    demo = True

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        if language(tokenizer) == "zh":  # run_scripts/caption/generate_caption_cn.sh
            return GenerationConfig(beam_size=8, max_len_b=128, min_len=1,
                                    no_repeat_ngram_size=3)
        if model_config.name == "huge":  # evaluate_caption_huge: beam 10, lenpen/temp 0.98
            return GenerationConfig(beam_size=10, max_len_b=16, no_repeat_ngram_size=3,
                                    lenpen=0.98, temperature=0.98)
        return GenerationConfig(beam_size=5, max_len_b=16, min_len=1, no_repeat_ngram_size=3)

    def prepare(self, tokenizer: AnyTokenizer, label: str, prompt: str | None = None
                ) -> Example:
        if prompt is None:
            prompt = PROMPT_ZH if language(tokenizer) == "zh" else PROMPT
        return Example(label, tokenizer.encode(prompt))

    def result(self, tokenizer: AnyTokenizer, example: Example, hyp: Hypothesis) -> dict:
        # official evaluation strips punctuation from the decoded caption; a Chinese decode
        # spaces every character, joined back here (scoring splits them again)
        text = strip_punctuation(tokenizer.decode(answer_tokens(example, hyp)))
        return {"caption": join_chinese(text) if language(tokenizer) == "zh" else text}

    def check_record(self, record: dict) -> None:
        references(record)

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import CAPTION_METRICS, FAST_CAPTION_METRICS, caption_report

        # Chinese captions are scored by character (no-op on other text)
        report = caption_report([split_cjk(p or "") for p in predictions],
                                [[split_cjk(c) for c in references(r)] for r in records],
                                metrics=CAPTION_METRICS if full else FAST_CAPTION_METRICS)
        notes = {k: f"not computed: {v}" for k, v in report.skipped.items()}
        notes.update({f"tokenizer{i}": n for i, n in enumerate(report.notes)})
        return report.scores, notes

    def target_text(self, record: dict) -> tuple[str, float]:
        caption = references(record)[0]
        return " " + strip_punctuation(pre_caption(caption, MAX_TARGET_WORDS)), \
            record_weight(record)
