"""Visual question answering.

Fine-tuned checkpoints (``vqa_*_best.pt``) take the question as a forced decoder prefix
(``prompt_type=prev_output``), optionally VinVL object tags, and decode unnormalised beam
search constrained by a trie of allowed answers, or score every candidate answer. Pre-trained
checkpoints answer zero-shot: beam 20, unnormalised, no prefix and no trie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..generate import GenerationConfig, Hypothesis, Trie
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from ..tokenizer_cn import AnyTokenizer
from .base import MAX_ITEM_CHARS, Example, Task, TaskField, answer_tokens, record_weight
from .text import pre_question, require_text

MODES = ("beam", "all", "open")
MAX_OBJECTS = 30


def source_text(question: str, objects: Sequence[str] | None = None) -> str:
    """``" {question}"`` plus ``" object: {o1 o2 ...}"`` (at most 30 VinVL tags)."""
    text = " " + pre_question(require_text(question, "question"))
    if objects:
        tags = [o.strip() for o in objects if o and o.strip()][:MAX_OBJECTS]
        text += " object: " + " ".join(tags)
    return text


def answers_of(record: dict) -> dict[str, float]:
    """A VQA record's ``{answer: confidence}``."""
    answers = record.get("answers") or {record["answer"]: 1.0}
    if isinstance(answers, list):
        answers = {a: 1.0 for a in answers}
    if not isinstance(answers, dict) or not answers or not all(
            isinstance(a, str) and a.strip() and isinstance(c, int | float)
            and not isinstance(c, bool) and c >= 0 for a, c in answers.items()):
        raise InputError("answers must map answer strings to non-negative confidences")
    return {a: float(c) for a, c in answers.items()}


class VQATask(Task):
    name = "vqa"
    summary = "Answer a question about an image"
    preprocess = PreprocessCfg(480)
    fields = (
        TaskField("question", "the question", required=True, short="q"),
        TaskField("objects", "VinVL object tags, for fine-tunes trained with them",
                  kind="texts", max_items=100, max_chars=MAX_OBJECTS * 4),
        TaskField("answers", "allowed answers (e.g. the 3,129 of VQAv2)",
                  kind="texts", per_input=False, record="", max_chars=MAX_ITEM_CHARS),
        TaskField("mode", "beam: beam search (within the answers if given); all: score every "
                          "answer (official numbers); open: unconstrained",
                  kind="choice", per_input=False, choices=MODES, default="beam", record=""),
        TaskField("zero_shot", "pre-trained model settings: no question prefix, no trie, "
                               "beam 20 (default: unless the checkpoint is a VQA fine-tune)",
                  kind="flag", per_input=False, off="finetuned", record="", serve=False),
    )
    outputs = {"question": (str, "the question as the model read it"),
               "answer": (str, "the answer"),
               "scores": (dict[str, float | None] | None,
                          "summed log-prob of every answer (mode 'all')")}
    primary_metric = "acc"
    result_key = "answer"
    record_fields = ("image", "question")
    default_model = "ofa-base-vqa"
    demo = True

    def __init__(self, zero_shot: bool = False, answers: Sequence[str] | None = None,
                 mode: str = "beam") -> None:
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if answers is not None and (isinstance(answers, str) or not all(
                isinstance(a, str) for a in answers)):
            raise InputError("answers must be a list of strings")
        if mode == "all" and not answers:
            raise InputError("mode 'all' scores candidate answers: pass answers=[...]")
        self.zero_shot, self.mode = zero_shot, mode
        self.answers = list(answers) if answers else None

    def configure(self, model_task: str | None = None, *, zero_shot: bool | None = None,
                  answers: Sequence[str] | None = None, mode: str | None = None) -> VQATask:
        if zero_shot is None:
            zero_shot = model_task not in (None, "vqa")
        return VQATask(zero_shot, answers, mode or "beam")

    def candidates(self) -> list[str] | None:
        return self.answers if self.mode == "all" else None

    def constraint(self, tokenizer: OFATokenizer) -> Trie | None:
        if self.mode == "beam" and self.answers:
            return Trie.from_answers(tokenizer, self.answers)
        return None

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        if self.zero_shot:
            # evaluate_vqa_zeroshot.sh keeps fairseq's default max_len_b (200); answers end
            # within a few tokens because unnormalised scores only fall with length
            return GenerationConfig(beam_size=20, min_len=1, normalize_scores=False,
                                    zero_shot=True)
        return GenerationConfig(beam_size=5, min_len=1, normalize_scores=False)

    def prepare(self, tokenizer: OFATokenizer, label: str, question: str = "",
                objects: Sequence[str] | None = None) -> Example:
        if objects is not None and (isinstance(objects, str) or not all(
                isinstance(o, str) for o in objects)):
            raise InputError("objects must be a list of tag strings")
        text = source_text(question, objects)
        source = tokenizer.encode(text)
        # prev_output prompt: the source without BOS/EOS is forced after the decoder's BOS
        prefix = [] if self.zero_shot else source[1:-1]
        return Example(label, source, prefix=prefix, info={"question": text.strip()})

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        return {"question": example.info["question"],
                "answer": tokenizer.decode(answer_tokens(example, hyp)).strip()}

    def result_from_scores(self, example: Example, scores: dict[str, float]) -> dict:
        return {"question": example.info["question"], "answer": max(scores, key=scores.get)}

    def check_record(self, record: dict) -> None:
        if not record.get("answers") and not record.get("answer"):
            raise InputError("vqa record lacks answers")
        answers_of(record)

    def eval_options(self, records: Sequence[dict], given: dict[str, Any]) -> dict[str, Any]:
        answers = given.get("answers")
        # scoring every answer needs a list; without one the answers are decoded
        mode = (given.get("mode") or "beam") if answers else "beam"
        return {"answers": list(answers) if answers else None, "mode": mode}

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        """Official VQA accuracy where the 10 human answers are known, else the confidence
        lookup of OFA's own answer format; questions without answers (test-dev) are not
        scored."""
        from ..metrics import mean_vqa_accuracy, vqa_score

        pairs = list(zip(records, predictions, strict=True))
        human = [(p or "", r["human_answers"]) for r, p in pairs if r.get("human_answers")]
        if human:
            return {"acc": mean_vqa_accuracy([p for p, _ in human], [h for _, h in human])}, {}
        conf = [(p or "", r) for r, p in pairs if r.get("answers") or r.get("answer")]
        if conf:
            return {"acc": vqa_score([p for p, _ in conf],
                                     [answers_of(r) for _, r in conf])}, {}
        return {}, {}

    def target_text(self, record: dict) -> tuple[str, float]:
        answers = answers_of(record)
        best = max(answers, key=answers.get)  # official: most confident answer, its conf
        return " " + best.strip(), record_weight(record) * answers[best]
