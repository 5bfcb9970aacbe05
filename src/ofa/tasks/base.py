"""What every task module provides: a prompt builder, official decoding settings and
post-processing around one prepared input (:class:`Example`), and the facts the layers (API,
CLI, server, evaluation, training) read from the task table instead of re-deriving them: the
inputs it takes (:class:`TaskField`), the fields of its result, how it reads data records,
how it is scored and what the decoder is trained to produce."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from ..generate import GenerationConfig, Hypothesis, Trie
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from ..tokenizer_cn import AnyTokenizer

MAX_TEXT_CHARS = 1000  # a question, an expression, a prompt
MAX_ARTICLE_CHARS = 20_000  # an article to summarise
MAX_LIST_ITEMS = 2000  # candidate answers or class names
MAX_ITEM_CHARS = 200  # one candidate


@dataclass(frozen=True)
class TaskField:
    """One input of a task, under one name in the API (keyword), the CLI (``--name``), the
    server (request field) and, unless ``record`` says otherwise, the data records.

    ``per_input`` fields take one value per input (a question per image); the others are
    options of a whole call (the candidate answers) and batch only with equal values.
    ``kind``: ``text`` (one string), ``texts`` (a list of strings: a file of lines on the
    CLI for an option, comma-separated for a per-input field), ``int``, ``choice``, ``flag``
    (True / False / None = the task decides; ``off`` names the CLI flag that sets False)."""

    name: str
    help: str
    kind: str = "text"
    per_input: bool = True
    required: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None
    bounds: tuple[int, int] = (1, 100)  # an int's range
    max_chars: int = MAX_TEXT_CHARS  # a text's (or a list item's) length
    max_items: int = MAX_LIST_ITEMS  # a list's length
    short: str = ""  # the CLI's one-letter flag
    off: str = ""  # a flag's CLI opposite (e.g. --finetuned for --zero-shot)
    record: str | None = None  # its name in data records (default: name; "": not in records)
    serve: bool = True  # offered by the HTTP API

    @property
    def record_name(self) -> str:
        return self.name if self.record is None else self.record


@dataclass
class Example:
    """One input ready for the model. ``prefix`` are decoder tokens forced after BOS (the
    official ``prev_output`` prompt); ``info`` carries what post-processing needs."""

    input: str
    source: list[int]
    image: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None  # original (width, height)
    prefix: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class Task:
    """Base of the task modules. Subclasses set the class attributes and override
    :meth:`generation_config`, :meth:`prepare` and :meth:`result` (generating tasks) or
    :meth:`candidates` and :meth:`result_from_scores` (scoring tasks)."""

    name: str = ""  # the one name of the task: API method, CLI command, route, record "task"
    summary: str = ""  # one line, for help texts and the server's endpoint list
    # "generate" (decode text), "score" (rank fixed candidates) or "draw" (sample images)
    kind: str = "generate"
    image: str = "required"  # "required", "optional" or "none" (set "none" for text-only)
    preprocess: PreprocessCfg | None = None  # None: a text-only task
    fields: tuple[TaskField, ...] = ()  # the inputs it takes, besides the image
    # files the task needs besides the model (a VQGAN): attached to a loaded model once
    # (``OFA.attach``), given as flags to the CLI commands and to ``ofa serve``
    parts: tuple[TaskField, ...] = ()
    # result fields besides input/tokens/score: name -> (type, description)
    outputs: dict[str, tuple[Any, str]] = {}
    primary_metric: str | None = None  # the figure the task is published by (eval, keep-best)
    result_key: str = ""  # the field of a result that holds the answer
    record_fields: tuple[str, ...] = ()  # what a data record must hold; () = no records
    default_model: str = ""  # registry name used when no model is given
    demo: bool = False  # the embedded shapes-demo model was trained for it
    # the vocabularies it has prompts for: "en" (GPT-2 BPE), "zh" (the Chinese checkpoints)
    languages: tuple[str, ...] = ("en",)

    @property
    def image_size(self) -> int | None:
        """The official input size, or None for a text-only task."""
        return None if self.preprocess is None else self.preprocess.size

    @property
    def input_fields(self) -> tuple[TaskField, ...]:
        return tuple(f for f in self.fields if f.per_input)

    @property
    def option_fields(self) -> tuple[TaskField, ...]:
        return tuple(f for f in self.fields if not f.per_input)

    # ------------------------------------------------------------------ running
    def configure(self, model_task: str | None = None, **options: Any) -> Task:
        """This task with the call's options (``option_fields``) applied; ``model_task`` is
        what the loaded checkpoint was fine-tuned for (some defaults depend on it)."""
        if options:
            raise InputError(f"the {self.name} task takes no options: {', '.join(options)}")
        return self

    def candidates(self) -> list[str] | None:
        """The fixed answers to score, or None to decode."""
        return None

    def constraint(self, tokenizer: OFATokenizer) -> Trie | None:
        """A trie the decoded answers must follow, or None."""
        return None

    def generation_config(self, model_config: OFAConfig,
                          tokenizer: AnyTokenizer | None = None) -> GenerationConfig:
        """The official decoding settings for ``model_config``; ``tokenizer`` tells the
        vocabulary (the Chinese checkpoints have settings and token ranges of their own)."""
        return GenerationConfig()

    def prepare(self, tokenizer: OFATokenizer, label: str, **fields: Any) -> Example:
        raise NotImplementedError

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        raise NotImplementedError

    def result_from_scores(self, example: Example, scores: dict[str, float]) -> dict:
        """The result of a scoring call from every candidate's summed log-probability."""
        raise NotImplementedError

    def one_line(self, result: dict) -> str:
        """The answer of ``result`` as one line of text (the CLI's plain output)."""
        return str(result[self.result_key])

    def to_json(self, result: dict) -> dict:
        """``result`` with what JSON cannot hold (images) in a form it can (the CLI's
        ``--json``, the server's bodies, evaluation's predictions)."""
        return result

    def reference(self, result: dict) -> dict:
        """The record fields that make a (JSON) result its own reference: a record built from
        them scores the result as right and trains towards it."""
        return {self.result_key: result[self.result_key]}

    # ------------------------------------------------------------------ data records
    def check_record(self, record: dict) -> None:
        """Raise an InputError if ``record``'s task-specific fields are malformed (the
        required ones are known present)."""

    def inputs_from_records(self, records: Sequence[dict]) -> dict[str, list]:
        """The per-input API fields of ``records`` (one list each; absent fields left out)."""
        out = {}
        for f in self.input_fields:
            if f.record_name:
                values = [r.get(f.record_name) for r in records]
                if any(v is not None for v in values):
                    out[f.name] = values
        return out

    def eval_options(self, records: Sequence[dict], given: dict[str, Any]) -> dict[str, Any]:
        """The options an evaluation of ``records`` calls the task with (``given``: what the
        user set, by field name; unset ones are None)."""
        return {k: v for k, v in given.items() if v is not None}

    def record_options(self, record: dict) -> dict[str, Any]:
        """Options a record sets itself (GLUE: its dataset); evaluation runs the records
        whose options differ as separate calls."""
        return {}

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        """Metrics of ``predictions`` (the ``result_key`` values) against ``records``, and
        notes on metrics not computed. ``full``: the slow benchmark metrics too."""
        raise InputError(f"the {self.name} task has no data records to score")

    def target_text(self, record: dict) -> tuple[str, float]:
        """What the decoder is trained to produce for ``record``, and the sample's weight."""
        raise InputError(f"the {self.name} task has no training records")

    def target_tokens(self, tokenizer: OFATokenizer, record: dict, example: Example,
                      patch: int | None) -> tuple[list[int], float]:
        """The target ids (no BOS/EOS) and weight; ``example`` holds the original image size
        and ``patch`` the side it was resized to."""
        text, weight = self.target_text(record)
        return tokenizer.encode(text, add_bos_eos=False), weight


def answer_tokens(example: Example, hyp: Hypothesis) -> list[int]:
    """Generated ids after the forced prefix, without the final EOS."""
    tokens = hyp.tokens.tolist()[len(example.prefix):]
    return tokens[:-1] if tokens and tokens[-1] == 2 else tokens


def language(tokenizer: AnyTokenizer | None) -> str:
    """``"zh"`` for the Chinese checkpoints' vocabulary, else ``"en"`` (also for None)."""
    return "en" if tokenizer is None else tokenizer.language


_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


def require_language(task: Task, tokenizer: AnyTokenizer) -> None:
    """An InputError unless ``task`` has prompts for the model's vocabulary."""
    lang = language(tokenizer)
    if lang not in task.languages:
        wanted = " or ".join(_LANGUAGE_NAMES[x] for x in task.languages)
        example = f" (e.g. {task.default_model})" if task.default_model else ""
        raise InputError(f"the {task.name} task needs a model with the {wanted} "
                         f"vocabulary{example}; this model has the {_LANGUAGE_NAMES[lang]} one")


def record_weight(record: dict) -> float:
    return float(record.get("weight", 1.0))
