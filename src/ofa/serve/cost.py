"""What a candidate-scoring request (classify, entail, VQA ``mode: all``) will cost, known
before it is queued, so that one valid request cannot hold the model for minutes.

Scoring runs the decoder once per candidate over ``[BOS] + prompt + candidate + EOS`` (the
prompt: VQA's question, entailment's statement), and each of those rows first projects the
whole encoder output (image patches and text) into its cross-attention keys and values. So
a candidate costs a fixed part, about as much as ``ROW_TOKENS`` decoder tokens, plus one
part per token (the prompt's and its own). The budget counts those *scoring tokens*; the
default is a few seconds of the base model on two CPU cores (BENCHMARKS.md, *Scoring
cost*). Generation (caption, VQA beam, ...) needs no budget here: beam and length are
capped by the request schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import OFAError
from ..tasks import TASKS, Task
from .endpoints import with_defaults
from .errors import ApiError

# The fixed cost of one candidate row, in decoder tokens: the base model at 480 px spends
# as long projecting its ~900 encoder positions for a row as decoding ~64 tokens of it.
ROW_TOKENS = 64
FLAG = "--max-score-tokens"


class ScoringBudget:
    """``check(task, options, fields)`` raises a 422 :class:`ApiError` for a scoring request
    above ``max_tokens`` scoring tokens; other requests pass untouched. A request scores
    candidates when its task, configured with its options (and the server's ``defaults``
    for those it left unset), has candidates; ``model_task`` is what the served checkpoint
    was fine-tuned for, which some tasks' settings depend on.

    Token counts come from the model's tokenizer when it has one; without it the UTF-8 size
    stands in, an upper bound (byte-level BPE makes at most one token per byte)."""

    def __init__(self, tokenizer: Any, max_tokens: int,
                 defaults: Mapping[str, Mapping[str, Any]] | None = None,
                 model_task: str | None = None) -> None:
        self.tokenizer = tokenizer if callable(getattr(tokenizer, "encode_batch", None)) else None
        self.max_tokens = max_tokens
        self.defaults = {task: dict(d) for task, d in (defaults or {}).items()}
        self.model_task = model_task
        # clients tend to send the same class or answer list every time: count it once
        self._candidate_tokens = lru_cache(maxsize=32)(self._count_candidates)

    def applies(self, task: str, options: dict) -> bool:
        """Whether ``check`` has anything to do (so cheap requests skip a thread hop)."""
        return self._scoring(task, options) is not None

    def check(self, task: str, options: dict, fields: dict) -> None:
        found = self._scoring(task, options)
        if found is None:
            return
        configured, candidates, field = found
        given = {k: v for k, v in fields.items() if v is not None}
        prompt = self._prefix(configured, given)
        n = len(candidates)
        total = n * (ROW_TOKENS + prompt + 1) + self._candidate_tokens(tuple(candidates))
        if total <= self.max_tokens:  # +1 above: each row's EOS is scored too
            return
        per = total / n
        fits = int(self.max_tokens // per)
        what = field or "candidates"
        inputs = " or ".join(given) if prompt else ""  # shorter inputs help only then
        how = f"each costs {ROW_TOKENS + 1} + its own tokens"
        if prompt:
            how += f" + {prompt} for the {inputs}"
        if field is None:  # the task's own fixed candidates
            advice = f"send a shorter {inputs}" if inputs else "the server's limit is too low"
        elif options.get(field) is None:
            advice = (f"send your own shorter list of {field} (the server's default has "
                      f"{n:,})" + (f" or a shorter {inputs}" if inputs else ""))
        else:
            advice = (f"send fewer or shorter {field}, splitting the list over several "
                      "requests" + (f", or a shorter {inputs}" if inputs else ""))
        raise ApiError(422, (
            f"{what}: scoring {n:,} {what} costs {total:,} scoring tokens, above the "
            f"server's limit of {self.max_tokens:,} ({FLAG}); {how} ({per:,.0f} on average "
            f"here, so about {fits:,} like these fit in one request): {advice}"))

    def _scoring(self, task: str, options: dict) -> tuple[Task, list[str], str | None] | None:
        """For a call that scores candidates: the configured task, its candidates and the
        option that holds them (None: the task's own). None for a call that decodes."""
        spec = TASKS.get(task)
        if spec is None:
            return None
        names = {f.name for f in spec.option_fields}
        given = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()
                 if k in names and v is not None}
        given = with_defaults(given, self.defaults.get(task))
        try:
            configured = spec.configure(self.model_task, **given)
        except OFAError:
            return None  # the model refuses these options with its own reason; nothing runs
        candidates = configured.candidates()
        if candidates is None:
            return None
        field = next((k for k, v in given.items()
                      if isinstance(v, list) and list(v) == list(candidates)), None)
        return configured, list(candidates), field

    # ------------------------------------------------------------------ counting
    def _prefix(self, task: Task, fields: dict) -> int:
        """The tokens every candidate row repeats after BOS (VQA's question, entailment's
        prompt): the prepared input's decoder prefix."""
        if self.tokenizer is not None:
            try:
                return len(task.prepare(self.tokenizer, "", **fields).prefix)
            except Exception:  # an input the model will refuse: bound it as below
                pass
        texts = [t for v in fields.values() for t in (v if isinstance(v, list | tuple) else [v])
                 if isinstance(t, str)]
        return sum(self._count(texts))

    def _count_candidates(self, candidates: tuple[str, ...]) -> int:
        return sum(self._count(candidates))

    def _count(self, texts: Sequence[str]) -> list[int]:
        # the leading space is how candidates and questions are encoded (encode_answers)
        spaced = [" " + t for t in texts]
        if self.tokenizer is not None:
            try:
                return [len(ids) for ids in self.tokenizer.encode_batch(spaced,
                                                                        add_bos_eos=False)]
            except Exception:  # a text the tokenizer refuses (a lone surrogate): bound it
                pass
        return [len(t.encode("utf-8", "surrogatepass")) for t in spaced]
