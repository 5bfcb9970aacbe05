"""Text recognition (OFA-OCR, the Chinese checkpoints ``ofa_cn_ocr_*``): ``"图片上的文字是什么?"``
on a text line made square without distortion (:mod:`ofa.preprocess_ocr`), beam 5, at most 64
tokens, the decoded text without spaces (OFA-Sys/OFA data/mm_data/ocr_dataset.py,
run_scripts/ocr/evaluate_ocr.sh, utils/eval_utils.py ``eval_ocr``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer_cn import AnyTokenizer
from .base import Example, Task, TaskField, answer_tokens, record_weight
from .text import require_text

PROMPT = "图片上的文字是什么?"
MAX_TARGET_TOKENS = 64  # official --max-tgt-length of the OCR scripts


class OCRTask(Task):
    name = "ocr"
    summary = "Read the text in an image (OFA-OCR: the Chinese OCR checkpoints)"
    preprocess = PreprocessCfg(480, resize="ocr")
    fields = (TaskField("document", "document mode: the image is read as one long line cut "
                                    "into four rows (OFA-OCR's is_document)", kind="flag",
                        per_input=False, record=""),)
    outputs = {"text": (str, "the text read, without spaces (as the official evaluation "
                             "compares it)")}
    primary_metric = "acc"
    result_key = "text"
    record_fields = ("image", "text")
    default_model = "ofa-cn-ocr-base"
    languages = ("zh",)

    def __init__(self, document: bool = False) -> None:
        self.document = bool(document)
        if self.document:
            self.preprocess = PreprocessCfg(480, resize="ocr_document")

    def configure(self, model_task: str | None = None, *,
                  document: bool | None = None) -> OCRTask:
        return OCRTask(bool(document))

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        return GenerationConfig(beam_size=5, max_len_b=MAX_TARGET_TOKENS, min_len=1,
                                no_repeat_ngram_size=0)

    def prepare(self, tokenizer: AnyTokenizer, label: str) -> Example:
        return Example(label, tokenizer.encode(PROMPT))

    def result(self, tokenizer: AnyTokenizer, example: Example, hyp: Hypothesis) -> dict:
        return {"text": tokenizer.decode(answer_tokens(example, hyp)).replace(" ", "")}

    def check_record(self, record: dict) -> None:
        require_text(record["text"], "text")

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import ocr_scores

        return ocr_scores([p or "" for p in predictions], [r["text"] for r in records]), {}

    def target_text(self, record: dict) -> tuple[str, float]:
        # the official labels: NFKC and lower case (traditional -> simplified is the data's)
        text = unicodedata.normalize("NFKC", record["text"]).lower()
        return " " + text, record_weight(record)
