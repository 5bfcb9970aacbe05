"""Visual grounding (RefCOCO/+/g): exactly 4 ``<bin_i>`` tokens, decoded to a box in pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..boxes import bins_to_box, box_to_bins, is_bin_token, validate_box
from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import BIN_OFFSET, NUM_BINS, OFATokenizer
from .base import Example, Task, TaskField, record_weight
from .text import pre_caption, require_text

PROMPT = ' which region does the text " {} " describe?'


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
    demo = True

    def __init__(self, bins_only: bool = False) -> None:
        # The official evaluation does not constrain the vocabulary; bins_only restricts the
        # 4 steps to <bin_i> tokens only.
        self.bins_only = bool(bins_only)

    def configure(self, model_task: str | None = None, *,
                  bins_only: bool | None = None) -> GroundingTask:
        return GroundingTask(bool(bins_only))

    def generation_config(self, model_config: OFAConfig) -> GenerationConfig:
        return GenerationConfig(beam_size=5, max_len_b=4, min_len=4, no_repeat_ngram_size=3,
                                constraint_range=(BIN_OFFSET, BIN_OFFSET + NUM_BINS)
                                if self.bins_only else None, strict_range=self.bins_only)

    def prepare(self, tokenizer: OFATokenizer, label: str, text: str = "") -> Example:
        expr = pre_caption(require_text(text, "referring expression"), 80)
        return Example(label, tokenizer.encode(PROMPT.format(expr)), info={"text": expr})

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        tokens = hyp.tokens.tolist()[:4]
        box = None
        if len(tokens) == 4 and all(is_bin_token(t) for t in tokens):
            # the bins cover the square the image was resized to (a checkpoint may use its own)
            patch = self.image_size if example.image is None else example.image.shape[-1]
            box = list(bins_to_box(tokens, example.image_size, patch))
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

    def target_tokens(self, tokenizer: OFATokenizer, record: dict, example: Example,
                      patch: int | None) -> tuple[list[int], float]:
        return box_to_bins(record["box"], example.image_size, patch), record_weight(record)
