"""GLUE text understanding as OFA fine-tunes it: SST-2, CoLA, MRPC, QQP, QNLI, RTE and MNLI,
one task with the dataset as an option.

Each dataset has its own instruction and label words (OFA-Sys/OFA data/nlu_data/
<name>_dataset.py). The texts are lower-cased, their whitespace collapsed, and cut to 512
words each. OFA's GLUE scripts use ``prompt_type=src``: the decoder reads the whole source
(BOS, instruction, EOS) and the label word follows it; the prediction is the label word the
model scores highest, the vocabulary restricted to the dataset's label words (the answer trie
of tasks/nlu_tasks/<name>.py). A tie goes to the first label word of the official
``ans2label_dict`` order.

Records: ``{"task": "glue", "dataset": "mrpc", "text": ..., "text2": ..., "label": ...}``;
``label`` is the label word (``yes``) or the label as GLUE's files write it (``1``,
``entailment``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..tokenizer import OFATokenizer
from .base import MAX_ARTICLE_CHARS, Example, Task, TaskField, record_weight
from .text import require_text

MAX_WORDS = 512  # per text: the official --max-src-length, applied to words


@dataclass(frozen=True)
class GlueDataset:
    """One GLUE dataset as OFA asks it. ``prompt`` takes ``{text}`` (and ``{text2}``);
    ``words`` are the label words in the official ``ans2label_dict`` order; ``labels`` maps
    every label a file may write to its word, GLUE's own form first; ``metrics`` are its
    official GLUE figures, ``best`` the one OFA keeps the best checkpoint by."""

    name: str
    title: str
    prompt: str
    pair: bool
    words: tuple[str, ...]
    labels: dict[str, str]
    metrics: tuple[str, ...]
    best: str = "acc"

    def word(self, label: object) -> str | None:
        """The label word of a record's ``label`` (a word or a GLUE label), or None."""
        if not isinstance(label, str | int) or isinstance(label, bool):
            return None
        key = str(label).strip()
        return key if key in self.words else self.labels.get(key, self.labels.get(key.lower()))

    def glue_label(self, word: str) -> str:
        """The label GLUE's files write for ``word`` (what a submission holds)."""
        return next(label for label, w in self.labels.items() if w == word)


_BINARY = {"0": "no", "1": "yes"}
_NLI2 = {"entailment": "yes", "not_entailment": "no"}
DATASETS: dict[str, GlueDataset] = {d.name: d for d in (
    # data/nlu_data/sst2_dataset.py: label 0 negative, 1 positive
    GlueDataset("sst2", "SST-2", ' is the sentiment of text " {text} " positive or negative?',
                False, ("negative", "positive"), {"0": "negative", "1": "positive"}, ("acc",)),
    # data/nlu_data/cola_dataset.py; tasks/nlu_tasks/cola.py keeps the best by mcc
    GlueDataset("cola", "CoLA", ' is the text " {text} " grammatically correct?', False,
                ("no", "yes"), _BINARY, ("mcc", "acc"), best="mcc"),
    # data/nlu_data/mrpc_dataset.py; tasks/nlu_tasks/mrpc.py logs acc and F1 (of "yes")
    GlueDataset("mrpc", "MRPC",
                ' does text1 " {text} " and text2 " {text2} " have the same semantics?', True,
                ("no", "yes"), _BINARY, ("f1", "acc")),
    # data/nlu_data/qqp_dataset.py
    GlueDataset("qqp", "QQP", ' is question " {text} " and question " {text2} " equivalent?',
                True, ("no", "yes"), _BINARY, ("f1", "acc")),
    # data/nlu_data/qnli_dataset.py: the sentence comes first in the prompt; labels are
    # GLUE's words or OFA's 0 / 1
    GlueDataset("qnli", "QNLI", ' does " {text2} " contain the answer to question " {text} "?',
                True, ("no", "yes"), {**_NLI2, **_BINARY}, ("acc",)),
    # data/nlu_data/rte_dataset.py: GLUE's words only
    GlueDataset("rte", "RTE", ' can text1 " {text} " imply text2 " {text2} "?', True,
                ("no", "yes"), _NLI2, ("acc",)),
    # data/nlu_data/mnli_dataset.py: OFA's files number the labels 0 maybe, 1 yes, 2 no
    GlueDataset("mnli", "MNLI", ' can text1 " {text} " imply text2 " {text2} "?', True,
                ("maybe", "yes", "no"),
                {"entailment": "yes", "neutral": "maybe", "contradiction": "no",
                 "0": "maybe", "1": "yes", "2": "no"}, ("acc",)),
)}
DATASET_NAMES = tuple(DATASETS)
DEFAULT_DATASET = "sst2"


def get_dataset(name: object) -> GlueDataset:
    """The dataset called ``name`` (``sst2``, ``SST-2``, ``mnli-mm`` ...); InputError else."""
    key = str(name).strip().lower().replace("-", "").replace("_", "") if isinstance(
        name, str) else None
    key = {"mnlim": "mnli", "mnlimm": "mnli", "mnlimatched": "mnli",
           "mnlimismatched": "mnli"}.get(key, key)
    if key not in DATASETS:
        raise InputError(f"unknown GLUE dataset {name!r}; choose one of "
                         f"{', '.join(DATASET_NAMES)}")
    return DATASETS[key]


def clean_text(text: str) -> str:
    """Lower-cased, whitespace collapsed, at most 512 words (data/nlu_data/*_dataset.py)."""
    return " ".join(text.lower().strip().split()[:MAX_WORDS])


class GlueTask(Task):
    name = "glue"
    summary = "GLUE text understanding (SST-2, CoLA, MRPC, QQP, QNLI, RTE, MNLI; text only)"
    kind = "score"
    image = "none"
    fields = (
        TaskField("text", "the sentence, or the first text of a pair (sentence1, question1, "
                          "QNLI's question)", required=True, max_chars=MAX_ARTICLE_CHARS),
        TaskField("text2", "the second text of a pair (sentence2, question2, QNLI's sentence)",
                  max_chars=MAX_ARTICLE_CHARS),
        TaskField("dataset", "the GLUE dataset: its instruction and label words (default: "
                             f"{DEFAULT_DATASET})", kind="choice", per_input=False,
                  choices=DATASET_NAMES, default=DEFAULT_DATASET),
    )
    outputs = {"dataset": (str, "the GLUE dataset asked"),
               "label": (str, "the label word (positive / negative, yes / no, maybe)"),
               "glue_label": (str, "the label as GLUE's files write it (1, entailment, ...)"),
               "scores": (dict[str, float | None], "summed log-prob of each label word")}
    # the mean of each dataset's keep-best figure (CoLA: MCC, the others: accuracy)
    primary_metric = "score"
    result_key = "label"
    record_fields = ("dataset", "text", "label")
    default_model = "ofa-large"  # no GLUE fine-tune is published: fine-tune ofa-large

    def __init__(self, dataset: str = DEFAULT_DATASET) -> None:
        self.dataset = get_dataset(dataset)

    def configure(self, model_task: str | None = None, *, dataset: str | None = None
                  ) -> GlueTask:
        return GlueTask(DEFAULT_DATASET if dataset is None else dataset)

    def candidates(self) -> list[str]:
        return list(self.dataset.words)

    def prepare(self, tokenizer: OFATokenizer, label: str, text: str = "",
                text2: str | None = None) -> Example:
        ds = self.dataset
        first = clean_text(require_text(text, "text"))
        if ds.pair and text2 is None:
            raise InputError(f"{ds.title} compares two texts: give text2 as well")
        if not ds.pair and text2 is not None:
            raise InputError(f"{ds.title} reads one text; text2 is for the pair datasets")
        second = clean_text(require_text(text2, "text2")) if ds.pair else ""
        source = tokenizer.encode(ds.prompt.format(text=first, text2=second))
        # prompt_type=src: the decoder reads the whole source, EOS included, then the label
        return Example(label, source, prefix=source[1:], info={"dataset": ds.name})

    def result_from_scores(self, example: Example, scores: dict[str, float]) -> dict:
        word = max(self.dataset.words, key=scores.__getitem__)  # first of tied maxima
        return {"dataset": self.dataset.name, "label": word,
                "glue_label": self.dataset.glue_label(word)}

    def one_line(self, result: dict) -> str:
        return f"{result['label']} ({result['glue_label']})"

    def reference(self, result: dict) -> dict:
        return {"dataset": result["dataset"], "label": result["label"]}

    # ------------------------------------------------------------------ data records
    def check_record(self, record: dict) -> None:
        ds = get_dataset(record["dataset"])
        require_text(record["text"], "text")
        if ds.pair:
            require_text(record.get("text2"), f"text2 ({ds.title} compares two texts)")
        elif record.get("text2") is not None:
            raise InputError(f"{ds.title} reads one text; drop text2")
        if ds.word(record["label"]) is None:
            raise InputError(f"{ds.title} label must be one of {list(ds.words)} or GLUE's "
                             f"{list(ds.labels)}, got {record['label']!r}")

    def record_options(self, record: dict) -> dict[str, Any]:
        return {"dataset": get_dataset(record.get("dataset")).name}

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        """Per dataset its official figures (``mrpc/f1``, ``cola/mcc``, ...); ``acc`` over
        all records; ``score`` the mean of each dataset's keep-best figure. Records without
        a label (GLUE's test files) are not scored."""
        from ..metrics.glue import glue_metrics

        by_dataset: dict[str, tuple[list[str], list[str]]] = {}
        for r, p in zip(records, predictions, strict=True):
            ds = get_dataset(r["dataset"])
            ref = ds.word(r.get("label"))
            if ref is None:
                continue
            # a failed input counts as wrong: the other label word (binary metrics stay so)
            pred = p if p in ds.words else next(w for w in ds.words if w != ref)
            preds, refs = by_dataset.setdefault(ds.name, ([], []))
            preds.append(pred)
            refs.append(ref)
        out: dict[str, float] = {}
        best = []
        for name, (preds, refs) in by_dataset.items():
            ds = DATASETS[name]
            figures = glue_metrics(preds, refs, ds.metrics)
            out.update({f"{name}/{k}": v for k, v in figures.items()})
            best.append(figures[ds.best])
        if by_dataset:
            right = sum(p == r for preds, refs in by_dataset.values()
                        for p, r in zip(preds, refs, strict=True))
            out["acc"] = right / sum(len(refs) for _, refs in by_dataset.values())
            out["score"] = sum(best) / len(best)
        return out, {}

    def target_text(self, record: dict) -> tuple[str, float]:
        ds = get_dataset(record["dataset"])
        word = ds.word(record.get("label"))
        if word is None:
            raise InputError(f"record {record.get('id', '?')}: no {ds.title} label to train on")
        return " " + word, record_weight(record)
