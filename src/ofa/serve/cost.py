"""What a candidate-scoring request (classify, VQA ``mode: all``) will cost, known before it
is queued, so that one valid request cannot hold the model for minutes.

Scoring runs the decoder once per candidate over ``[BOS] + question + candidate + EOS``, and
each of those rows first projects the whole encoder output (image patches and text) into
its cross-attention keys and values. So a candidate costs a fixed part, about as much as
``ROW_TOKENS`` decoder tokens, plus one part per token (the question's and its own). The
budget counts those *scoring tokens*; the default is a few seconds of the base model on two
CPU cores (BENCHMARKS.md, *Scoring cost*). Generation (caption, VQA beam, ...) needs no
budget here: beam and length are capped by the request schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .errors import ApiError

# The fixed cost of one candidate row, in decoder tokens: the base model at 480 px spends
# as long projecting its ~900 encoder positions for a row as decoding ~64 tokens of it.
ROW_TOKENS = 64
FLAG = "--max-score-tokens"


class ScoringBudget:
    """``check(task, options, fields)`` raises a 422 :class:`ApiError` for a scoring request
    above ``max_tokens`` scoring tokens; other requests pass untouched.

    Token counts come from the model's tokenizer when it has one; without it the UTF-8 size
    stands in, an upper bound (byte-level BPE makes at most one token per byte)."""

    def __init__(self, tokenizer: Any, max_tokens: int,
                 default_answers: Sequence[str] | None = None) -> None:
        self.tokenizer = tokenizer if callable(getattr(tokenizer, "encode_batch", None)) else None
        self.max_tokens = max_tokens
        self.default_answers = tuple(default_answers) if default_answers else None
        # clients tend to send the same class or answer list every time: count it once
        self._candidate_tokens = lru_cache(maxsize=32)(self._count_candidates)

    def applies(self, task: str, options: dict) -> bool:
        """Whether ``check`` has anything to do (so cheap requests skip a thread hop)."""
        return task == "classify" or (task == "vqa" and options.get("mode") == "all")

    def check(self, task: str, options: dict, fields: dict) -> None:
        if task == "classify":
            self._check(options["classes"], 0, "classes", "each class costs "
                        f"{ROW_TOKENS + 1} + its tokens", "send fewer or shorter classes, "
                        "splitting the list over several requests")
        elif task == "vqa" and options.get("mode") == "all":
            answers = options.get("answers")
            own = answers is not None
            if not own:
                answers = self.default_answers
                if answers is None:
                    return  # the model refuses "all" without answers; nothing to run
            question = self._count([fields.get("question") or ""])[0]
            how = (f"each answer costs {ROW_TOKENS + 1} + the question's {question} tokens + "
                   f"its own")
            advice = ("send fewer or shorter answers (splitting the list over several "
                      "requests) or a shorter question" if own else
                      f"send a shorter question, your own shorter list of answers (the "
                      f"server's default has {len(answers):,}) or use mode 'beam'")
            self._check(answers, question, "answers", how, advice)

    # ------------------------------------------------------------------ counting
    def _check(self, candidates: Sequence[str], question: int, field: str, how: str,
               advice: str) -> None:
        n = len(candidates)
        own = self._candidate_tokens(tuple(candidates))
        total = n * (ROW_TOKENS + question + 1) + own  # +1: each row's EOS is scored too
        if total <= self.max_tokens:
            return
        per = total / n
        fits = int(self.max_tokens // per)
        raise ApiError(422, (
            f"{field}: scoring {n:,} {field} costs {total:,} scoring tokens, above the "
            f"server's limit of {self.max_tokens:,} ({FLAG}); {how} ({per:,.0f} on average "
            f"here, so about {fits:,} like these fit in one request): {advice}"))

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
