"""Visual grounding (RefCOCO/+/g, and their Chinese translations for the Chinese checkpoints):
exactly 4 ``<bin_i>`` tokens, decoded to a box in pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..boxes import bins_to_box, box_to_bins, is_bin_token, validate_box
from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import BIN_OFFSET, NUM_BINS
from ..tokenizer_cn import AnyTokenizer
from .base import Example, Task, TaskField, language, record_weight
from .text import pre_caption, require_text

PROMPT = ' which region does the text " {} " describe?'
# OFA-Sys/OFA data/mm_data/refcoco_dataset.py with bpe=bert: ASCII quotes, full-width ？
PROMPT_ZH = '这段文字" {} "描述的是哪个区域？'


class GroundingTask(Task):
    name = "ground"
    summary = "Locate the region a text describes (visual grounding)"
    preprocess = PreprocessCfg(512)
    fields = (
        TaskField("text", "the referring expression, e.g. 'the blue square'", required=True,
                  short="t"),
        TaskField("bins_only", "allow only location tokens (the official evaluation does "
                               "not)", kind="flag", per_input=False, record=""),
    )
    outputs = {"text": (str, "the expression as the model read it"),
               "box": (list[float] | None, "[x0, y0, x1, y1] in pixels of the original "
                                           "image; null when no box was produced"),
               "image_size": (list[int], "[width, height] of the original image")}
    primary_metric = "acc@0.5"
    result_key = "box"
    record_fields = ("image", "text", "box")
    default_model = "ofa-base-refcoco"
    languages = ("en", "zh")
    demo = True

    def __init__(self, bins_only: bool = False) -> None:
        # The official evaluation does not constrain the vocabulary; bins_only restricts the
        # 4 steps to <bin_i> tokens only.
        self.bins_only = bool(bins_only)

    def configure(self, model_task: str | None = None, *,
                  bins_only: bool | None = None) -> GroundingTask:
        return GroundingTask(bool(bins_only))

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        # the same settings for the Chinese checkpoints (evaluate_refcoco_cn.sh)
        start = BIN_OFFSET if tokenizer is None else tokenizer.bin_offset
        return GenerationConfig(beam_size=5, max_len_b=4, min_len=4, no_repeat_ngram_size=3,
                                constraint_range=(start, start + NUM_BINS)
                                if self.bins_only else None, strict_range=self.bins_only)

    def prepare(self, tokenizer: AnyTokenizer, label: str, text: str = "") -> Example:
        expr = pre_caption(require_text(text, "referring expression"), 80)
        prompt = PROMPT_ZH if language(tokenizer) == "zh" else PROMPT
        return Example(label, tokenizer.encode(prompt.format(expr)), info={"text": expr})

    def result(self, tokenizer: AnyTokenizer, example: Example, hyp: Hypothesis) -> dict:
        tokens = hyp.tokens.tolist()[:4]
        box = None
        offset = tokenizer.bin_offset
        if len(tokens) == 4 and all(is_bin_token(t, bin_offset=offset) for t in tokens):
            # the bins cover the square the image was resized to (a checkpoint may use its own)
            patch = self.image_size if example.image is None else example.image.shape[-1]
            box = list(bins_to_box(tokens, example.image_size, patch, bin_offset=offset))
        size = None if example.image_size is None else list(example.image_size)
        return {"text": example.info["text"], "box": box, "image_size": size}

    def one_line(self, result: dict) -> str:
        box = result["box"]
        return "none" if box is None else " ".join(f"{v:.2f}" for v in box)

    def check_record(self, record: dict) -> None:
        validate_box(record["box"])

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import grounding_accuracy

        return {"acc@0.5": grounding_accuracy(list(predictions),
                                              [r["box"] for r in records])}, {}

    def target_tokens(self, tokenizer: AnyTokenizer, record: dict, example: Example,
                      patch: int | None) -> tuple[list[int], float]:
        return (box_to_bins(record["box"], example.image_size, patch,
                            bin_offset=tokenizer.bin_offset), record_weight(record))
