"""Visual entailment (SNLI-VE): does the image (and an optional premise) imply the hypothesis?
Scored over the candidates " no" / " yes" / " maybe" with the question as decoder prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import Example, Task, TaskField, record_weight
from .text import pre_caption, require_text

# the official candidate order (OFA-Sys/OFA tasks/mm_tasks/snli_ve.py, ans2label_dict): a tie
# goes to the first, as its argmax does
ANSWERS = {"no": "contradiction", "yes": "entailment", "maybe": "neutral"}
LABEL_TO_ANSWER = {label: answer for answer, label in ANSWERS.items()}
PROMPT = ' does the image describe " {} "?'
PROMPT_WITH_PREMISE = ' can image and text1 " {} " imply text2 " {} "?'


class EntailmentTask(Task):
    name = "entail"
    summary = "Visual entailment: does the image imply the hypothesis?"
    kind = "score"
    preprocess = PreprocessCfg(480)
    fields = (TaskField("hypothesis", "the statement to test", required=True),
              TaskField("premise", "an optional text premise"))
    outputs = {"hypothesis": (str, "the hypothesis as the model read it"),
               "answer": (str, "yes, no or maybe"),
               "label": (str, "entailment, contradiction or neutral"),
               "scores": (dict[str, float | None], "summed log-prob of each answer")}
    primary_metric = "acc"
    result_key = "label"
    record_fields = ("image", "hypothesis", "label")
    default_model = "ofa-base-snli-ve"
    demo = True

    def candidates(self) -> list[str]:
        return list(ANSWERS)

    def prepare(self, tokenizer: OFATokenizer, label: str, hypothesis: str = "",
                premise: str | None = None) -> Example:
        hyp = pre_caption(require_text(hypothesis, "hypothesis"), 80)
        if premise:
            text = PROMPT_WITH_PREMISE.format(pre_caption(premise, 80), hyp)
        else:
            text = PROMPT.format(hyp)
        source = tokenizer.encode(text)
        return Example(label, source, prefix=source[1:-1], info={"hypothesis": hyp})

    def result_from_scores(self, example: Example, scores: dict[str, float]) -> dict:
        answer = max(ANSWERS, key=scores.__getitem__)  # first of tied maxima
        return {"hypothesis": example.info["hypothesis"], "answer": answer,
                "label": ANSWERS[answer]}

    def one_line(self, result: dict) -> str:
        return f"{result['answer']} ({result['label']})"

    def check_record(self, record: dict) -> None:
        if record["label"] not in LABEL_TO_ANSWER:
            raise InputError(f"label must be one of {sorted(LABEL_TO_ANSWER)}")

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        from ..metrics import accuracy

        return {"acc": accuracy(list(predictions), [r["label"] for r in records])}, {}

    def target_text(self, record: dict) -> tuple[str, float]:
        return " " + LABEL_TO_ANSWER[record["label"]], record_weight(record)
