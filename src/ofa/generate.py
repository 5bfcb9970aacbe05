"""Sequence generation for OFA: fairseq-style beam search, sampling, answer tries and
all-candidate scoring (OFA-Sys/OFA ``models/sequence_generator.py`` and the
all-candidate evaluation of ``utils/eval_utils.py``).

The beam search follows the official OFA/fairseq ``SequenceGenerator`` (which produced the
published numbers) step for step, so token ids and scores match it:

* tokens start with BOS; at step ``s`` the decoder sees ``BOS + s`` tokens (KV cache: only the
  newest one is fed);
* ``max_len = int(max_len_a * src_len + max_len_b)`` (capped by the decoder's positions); at
  step >= max_len only EOS is allowed, and its real log-prob counts;
* before ``min_len`` EOS is blocked, PAD is always blocked, UNK pays ``unk_penalty``;
* log_softmax runs in fp32; constraints (answer trie, id range) mask the logits before it
  (fine-tuned models: probabilities renormalise) or the log-probs after it (``zero_shot``);
* ``prefix_tokens`` are forced one per step and their log-probs count in the score;
* each step takes the top ``2 * beam`` candidates over all beams of a sentence; an EOS among the
  first ``beam`` of them finishes a hypothesis, the first ``beam`` non-EOS ones continue;
  a sentence is done when ``beam`` hypotheses are finished (or at max_len) and leaves the batch;
* final score = sum of log-probs / (tokens incl. EOS, without BOS) ** lenpen when
  ``normalize_scores``, else the plain sum.

Deliberate differences from the official code (all need unusual settings to show):
a forced prefix blanks every other token to -inf even without a trie (OFA then uses
``min(prefix log-prob) - 1``, which lets non-prefix tokens into the beam), and a trie path that
falls off the trie allows only EOS (official: nothing, which gives a NaN row turned into -inf);
with ``zero_shot`` the trie is also looked up on the answer part only (official: on the whole
history, prefix included, which cannot work together with a prefix).
In a batch, ``src_len`` is each item's own non-pad length and min_len applies per row, so a
batch gives the same results as its items run alone (fairseq uses the padded width). A sentence
whose beams all score -inf stops early (fairseq decodes them up to max_len, same results).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .errors import InputError
from .model.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .model.decoder import DecoderCache
from .model.encoder import EncoderOutput
from .model.packed import steady_weights
from .tokenizer import as_id_list

if TYPE_CHECKING:
    from .model.ofa import OFAModel
    from .tokenizer import OFATokenizer

__all__ = ["GenerationConfig", "Hypothesis", "Trie", "SequenceGenerator", "generate",
           "score_candidates", "encode_answers", "on_checkpoint"]

NUM_SPECIAL = 4  # ids 0-3 (BOS, PAD, EOS, UNK): the official range mask never blanks them
_NEG_INF = float("-inf")


# ---------------------------------------------------------------- checkpoints
# A server runs long calls (thousands of candidates, long beams) for clients that may stop
# waiting. Between two decoding steps or two candidate chunks the loops below call the
# hook installed for their thread, which may raise to abandon the call (the exception
# leaves generate / score_candidates as is) or block while other work uses the device.
# Per thread, so one worker's hook never fires in another's loops; none installed: no-op.
_hooks = threading.local()


@contextmanager
def on_checkpoint(hook: Callable[[], None]) -> Iterator[None]:
    """Call ``hook()`` between decoding steps and candidate chunks in this thread, after
    any hook installed around this one (a progress bar inside a server call keeps the
    server's cancellation)."""
    previous = getattr(_hooks, "hook", None)
    if previous is None:
        _hooks.hook = hook
    else:
        def both() -> None:
            previous()
            hook()

        _hooks.hook = both
    try:
        yield
    finally:
        _hooks.hook = previous


def _checkpoint() -> None:
    hook = getattr(_hooks, "hook", None)
    if hook is not None:
        hook()


# ---------------------------------------------------------------- settings and results
@dataclass
class GenerationConfig:
    """Search settings. Defaults are fairseq's beam search with OFA's beam of 5.

    Official presets (reference 5.1): caption ``beam_size=5, max_len_b=16,
    no_repeat_ngram_size=3``; RefCOCO ``max_len_b=4, min_len=4, no_repeat_ngram_size=3``;
    VQA ``normalize_scores=False`` + answer trie + question prefix; zero-shot VQA
    ``beam_size=20, max_len_b=10, normalize_scores=False, zero_shot=True``.
    """

    beam_size: int = 5
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    no_repeat_ngram_size: int = 0
    lenpen: float = 1.0
    normalize_scores: bool = True
    unk_penalty: float = 0.0
    temperature: float = 1.0
    sampling: bool = False  # draw beam_size independent samples instead of beam search
    top_k: int = 0  # sampling: keep the k most likely tokens (0 = all)
    top_p: float = 0.0  # sampling: keep the smallest set with probability >= p (0 = off)
    seed: int | None = None  # sampling: seeds a private torch.Generator (None = global RNG)
    constraint_range: tuple[int, int] | None = None  # allowed ids [start, end) plus ids 0-3
    strict_range: bool = False  # constraint_range also blocks BOS and UNK (EOS stays allowed)
    zero_shot: bool = False  # constraints after log_softmax (pre-trained checkpoints)
    gen_code: bool = False  # image-code generation: code embeddings, ids 0-3 blocked to max_len
    nbest: int = 1  # hypotheses returned per item

    def __post_init__(self) -> None:
        if isinstance(self.constraint_range, str):  # the official "start,end" form
            parts = self.constraint_range.split(",")
            try:
                self.constraint_range = (int(parts[0]), int(parts[1]))
            except (ValueError, IndexError):
                raise InputError(f"constraint_range must be 'start,end', got "
                                 f"{self.constraint_range!r}") from None
        elif self.constraint_range is not None:
            self.constraint_range = tuple(self.constraint_range)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` for any out-of-range setting."""
        def need_int(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"{name} must be an integer >= {low}, got {v!r}")

        def need_number(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"{name} must be a finite number, got {v!r}")
            return float(v)

        need_int("beam_size", 1)
        need_int("max_len_b", 0)
        need_int("min_len", 0)
        need_int("no_repeat_ngram_size", 0)
        need_int("top_k", 0)
        need_int("nbest", 1)
        if need_number("max_len_a") < 0:
            raise InputError(f"max_len_a must be >= 0, got {self.max_len_a}")
        need_number("lenpen")
        need_number("unk_penalty")
        if need_number("temperature") <= 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= need_number("top_p") <= 1.0:
            raise InputError(f"top_p must be in [0, 1], got {self.top_p}")
        if not self.sampling and (self.top_k or self.top_p):
            raise InputError("top_k / top_p apply only to sampling; set sampling=True")
        if self.nbest > self.beam_size:
            raise InputError(f"nbest={self.nbest} exceeds beam_size={self.beam_size}: only "
                             "beam_size hypotheses are finished per item")
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise InputError(f"seed must be an integer or None, got {self.seed!r}")
        if self.constraint_range is not None:
            r = self.constraint_range
            if (len(r) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                       for x in r) or not NUM_SPECIAL <= r[0] < r[1]):
                raise InputError(f"constraint_range must be (start, end) with 4 <= start < end,"
                                 f" got {r!r}")

    def replace(self, **changes) -> GenerationConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass
class Hypothesis:
    """One finished output. ``tokens`` has no BOS, includes a forced prefix, ends with EOS;
    ``positional_scores`` holds the log-prob of each of those tokens (EOS included)."""

    tokens: torch.Tensor
    score: float
    positional_scores: torch.Tensor


# ---------------------------------------------------------------- answer trie
class Trie:
    """Prefix tree over token sequences, for answer-constrained decoding (reference 5.2).

    Sequences are stored as given; for OFA answer lists each one is
    ``[BOS] + bpe(" " + answer) + [EOS]`` (see :meth:`from_answers`).
    """

    def __init__(self, sequences: Iterable[Sequence[int]] = (), eos_id: int = EOS_ID) -> None:
        self.eos_id = eos_id
        self._root: dict[int, dict] = {}
        self._count = 0
        for seq in sequences:
            self.insert(seq)

    @classmethod
    def from_answers(cls, tokenizer: OFATokenizer, answers: Iterable[str]) -> Trie:
        """The official VQA trie: ``[BOS] + bpe(" " + answer) + [EOS]`` per answer."""
        return cls([BOS_ID, *ids, EOS_ID] for ids in encode_answers(tokenizer, answers))

    def insert(self, sequence: Sequence[int]) -> None:
        node = self._root
        for t in as_id_list(sequence, "trie sequence"):
            node = node.setdefault(t, {})
        self._count += 1

    def allowed(self, prefix_tokens: Sequence[int]) -> list[int]:
        """Tokens that may follow ``prefix_tokens``; only EOS once the path leaves the trie."""
        node = self._root
        for t in prefix_tokens:
            node = node.get(int(t))
            if node is None:
                return [self.eos_id]
        return list(node) if node else [self.eos_id]

    def __len__(self) -> int:
        return self._count


def encode_answers(tokenizer: OFATokenizer, answers: Iterable[str]) -> list[list[int]]:
    """``bpe(" " + answer)`` for each answer (no BOS/EOS), as OFA's VQA evaluation does."""
    out = []
    for a in answers:
        if not isinstance(a, str) or not a.strip():
            raise InputError(f"answers must be non-empty strings, got {a!r}")
        out.append(tokenizer.encode(" " + a, add_bos_eos=False))
    return out


# ---------------------------------------------------------------- generation
class SequenceGenerator:
    """fairseq-style generator bound to a config and an optional answer trie."""

    def __init__(self, config: GenerationConfig | None = None, trie: Trie | None = None) -> None:
        self.config = config if config is not None else GenerationConfig()
        self.trie = trie

    def generate(self, model: OFAModel, input_ids: torch.Tensor,
                 images: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                 prefix_tokens: torch.Tensor | None = None,
                 code_mask: torch.Tensor | None = None, *,
                 encoder_out: EncoderOutput | None = None,
                 generator: torch.Generator | None = None) -> list[list[Hypothesis]]:
        """See :func:`generate`."""
        return generate(model, input_ids, images, image_mask, self.config,
                        prefix_tokens=prefix_tokens, trie=self.trie, code_mask=code_mask,
                        encoder_out=encoder_out, generator=generator)

    __call__ = generate


@torch.no_grad()
def generate(model: OFAModel, input_ids: torch.Tensor, images: torch.Tensor | None = None,
             image_mask: torch.Tensor | None = None, config: GenerationConfig | None = None,
             prefix_tokens: torch.Tensor | None = None, trie: Trie | None = None,
             code_mask: torch.Tensor | None = None, *, encoder_out: EncoderOutput | None = None,
             generator: torch.Generator | None = None) -> list[list[Hypothesis]]:
    """Generate for a batch; returns up to ``config.nbest`` hypotheses per item, best first.

    input_ids [B, L] source tokens right-padded with PAD; images [B, 3, H, W] or None;
    image_mask [B] bool. prefix_tokens [B, P] (right-padded with PAD) are forced first (VQA:
    the question tokens without BOS/EOS). ``trie`` constrains the tokens after the prefix.
    code_mask [B] bool marks items decoded as image codes (default: all when
    ``config.gen_code``). ``encoder_out`` skips the encoder (it must hold B rows).
    ``generator`` seeds sampling (default: one seeded with ``config.seed``, if set).
    """
    cfg = config if config is not None else GenerationConfig()
    cfg.validate()
    search = _Search(model, cfg, trie)
    with steady_weights():  # the same weights at every step: packed copies checked once
        return search.run(input_ids, images, image_mask, prefix_tokens, code_mask,
                          encoder_out, generator)


class _Search:
    """State of one generate() call. Rows are ``sentence * r + beam`` where r is 1 at step 0
    (all beams equal the BOS-only one) and ``beam_size`` afterwards."""

    def __init__(self, model: OFAModel, cfg: GenerationConfig, trie: Trie | None) -> None:
        self.model = model
        self.cfg = cfg
        self.trie = trie
        self.device = next(model.parameters()).device
        self.vocab = model.config.vocab_size
        if cfg.constraint_range is not None and cfg.constraint_range[1] > self.vocab:
            raise InputError(f"constraint_range end {cfg.constraint_range[1]} exceeds the "
                             f"vocabulary size {self.vocab}")

    # ------------------------------------------------------------ inputs
    def _check_inputs(self, input_ids, prefix_tokens, code_mask, encoder_out):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 \
                or input_ids.shape[0] == 0 or input_ids.is_floating_point():
            raise InputError("input_ids must be an integer tensor [batch, length] with batch > 0")
        b = input_ids.shape[0]
        input_ids = input_ids.to(self.device, torch.long)
        if prefix_tokens is not None:
            if not isinstance(prefix_tokens, torch.Tensor) or prefix_tokens.dim() != 2 \
                    or prefix_tokens.shape[0] != b or prefix_tokens.is_floating_point():
                raise InputError(f"prefix_tokens must be an integer tensor [{b}, P]")
            prefix_tokens = prefix_tokens.to(self.device, torch.long)
            pad = prefix_tokens.eq(PAD_ID)
            if (pad[:, :-1] & ~pad[:, 1:]).any():
                raise InputError("prefix_tokens must be right-padded with PAD (1)")
            if prefix_tokens.eq(EOS_ID).any():
                raise InputError("prefix_tokens must not contain EOS (2)")
            if prefix_tokens.shape[1] == 0 or pad.all():
                prefix_tokens = None
        if code_mask is None and self.cfg.gen_code:
            code_mask = torch.ones(b, dtype=torch.bool)
        if code_mask is not None:
            code_mask = torch.as_tensor(code_mask).to(self.device, torch.bool).reshape(-1)
            if code_mask.numel() != b:
                raise InputError(f"code_mask must have {b} entries, got {code_mask.numel()}")
        if encoder_out is not None and encoder_out.hidden.shape[0] != b:
            raise InputError(f"encoder_out holds {encoder_out.hidden.shape[0]} rows for a "
                             f"batch of {b}")
        return input_ids, prefix_tokens, code_mask

    def run(self, input_ids, images, image_mask, prefix_tokens, code_mask, encoder_out,
            generator) -> list[list[Hypothesis]]:
        cfg, model, dev = self.cfg, self.model, self.device
        input_ids, prefix_tokens, code_mask = self._check_inputs(
            input_ids, prefix_tokens, code_mask, encoder_out)
        b, k = input_ids.shape[0], cfg.beam_size

        # per-item limits: fairseq's int(a * src_len + b), kept inside the decoder positions
        src_len = input_ids.ne(PAD_ID).sum(1)
        max_len = (cfg.max_len_a * src_len.double() + cfg.max_len_b).long()
        max_len = max_len.clamp(max=model.decoder.max_positions(cfg.gen_code) - 1)
        if bool((max_len < cfg.min_len).any()):
            raise InputError(f"min_len={cfg.min_len} exceeds max_len={int(max_len.min())} "
                             "(max_len_a * source length + max_len_b, capped by the decoder)")
        self.max_len = max_len
        self.prefix = prefix_tokens
        self.prefix_len = (prefix_tokens.ne(PAD_ID).sum(1) if prefix_tokens is not None
                           else torch.zeros(b, dtype=torch.long, device=dev))
        self.code_mask = code_mask
        if cfg.sampling and generator is None and cfg.seed is not None:
            generator = torch.Generator(device=dev).manual_seed(cfg.seed)
        self.generator = generator

        if encoder_out is None:
            if images is not None:
                images = images.to(dev)
            if image_mask is not None:
                image_mask = torch.as_tensor(image_mask).to(dev)
            encoder_out = model.encode(input_ids, images, image_mask)

        finalized: list[list[Hypothesis]] = [[] for _ in range(b)]
        sent = torch.arange(b, device=dev)  # original index of each active sentence
        r = 1
        tokens = torch.full((b, 1), BOS_ID, dtype=torch.long, device=dev)
        scores = torch.zeros(b, 0, dtype=torch.float32, device=dev)  # cumulative log-probs
        ignored = torch.zeros(b, k, dtype=torch.bool, device=dev)  # sampling: finished slots
        cache = DecoderCache(capacity=int(self.max_len.max()) + 1)  # BOS + every step
        enc = encoder_out
        allowed = self._allowed_ids()
        table = None if allowed is None else model.embed_tokens.weight.index_select(0, allowed)
        narrow = allowed is not None and self._narrow_search(allowed.shape[0])
        step = 0
        while True:
            if step:
                _checkpoint()
            rows_sent = sent.repeat_interleave(r)
            rows_code = code_mask[rows_sent] if code_mask is not None else None
            logits = model.decode(tokens[:, -1:], enc, cache, rows_code, table)[:, -1, :].float()
            if allowed is not None and not narrow:
                # the other ids' logits: -inf, as the range mask sets them
                logits = logits.new_full((logits.shape[0], model.config.vocab_size),
                                         _NEG_INF).index_copy_(1, allowed, logits)
            lprobs = self._log_probs(logits, tokens, step, rows_sent, narrow)

            if cfg.sampling:
                cand_scores, cand_tokens, cand_beams = self._sample(lprobs, scores, r)
            else:
                cand_scores, cand_tokens, cand_beams = self._beam_candidates(lprobs, scores, r)
            if narrow:  # columns to ids
                cand_tokens = allowed[cand_tokens]
            is_eos = cand_tokens.eq(EOS_ID) & cand_scores.ne(_NEG_INF)
            if cfg.sampling:
                is_eos &= ~ignored
            n_sent = sent.shape[0]

            # finish hypotheses: an EOS among the first beam_size candidates
            top_eos = is_eos[:, :k]
            done = max_len[sent].le(step)  # at max_len every sentence ends
            if bool(top_eos.any()):
                self._finalize(top_eos, cand_scores, cand_beams, tokens, scores, step, r, sent,
                               finalized)
            counts = torch.tensor([len(finalized[s]) for s in sent.tolist()], device=dev)
            done |= counts.ge(k)
            if bool(done.all()):
                break

            # continue: per sentence the first beam_size candidates that are not a finished EOS
            if cfg.sampling:  # each slot continues itself; finished slots stay ignored
                active = torch.arange(k, device=dev).expand(n_sent, k)
                new_ignored = ignored | is_eos
            else:
                cand_size = cand_scores.shape[1]
                order = is_eos.long() * cand_size + torch.arange(cand_size, device=dev)
                active = order.topk(k, dim=1, largest=False).indices
                new_ignored = ignored
            # a sentence whose beams all score -inf can never finish another hypothesis (e.g.
            # a small answer trie with fewer answers than beams): stop it instead of running on
            # to max_len; fairseq would decode those dead beams, with the same result
            live = cand_scores.gather(1, active).ne(_NEG_INF) & ~new_ignored
            done |= ~live.any(1)
            if bool(done.all()):
                break
            keep = (~done).nonzero().squeeze(1)
            active = active[keep]
            parent = (keep[:, None] * r + cand_beams[keep].gather(1, active)).reshape(-1)
            new_tok = cand_tokens[keep].gather(1, active).reshape(-1, 1)
            new_score = cand_scores[keep].gather(1, active).reshape(-1, 1)
            # sampling slots continue themselves: no copy of the cache (it grows each step)
            same_rows = parent.shape[0] == tokens.shape[0] and bool(
                parent.eq(torch.arange(parent.shape[0], device=dev)).all())
            if not same_rows:
                tokens, scores = tokens.index_select(0, parent), scores.index_select(0, parent)
            tokens = torch.cat([tokens, new_tok], dim=1)
            scores = torch.cat([scores, new_score], dim=1)
            ignored = new_ignored[keep]
            # encoder rows and cross-attention keys/values stay one per sentence
            if keep.shape[0] == n_sent:
                if not same_rows:
                    cache.reorder(parent)
            else:
                cache.reorder(parent, sources=keep)
                enc = enc.index_select(keep)
            sent = sent[keep]
            r = k
            step += 1

        out = []
        for hyps in finalized:
            hyps = sorted(hyps, key=lambda h: -h.score)  # stable: ties keep finishing order
            out.append(hyps[:cfg.nbest])
        return out

    def _allowed_ids(self) -> torch.Tensor | None:
        """The ids a fine-tuned model may emit under ``constraint_range`` (the special ids and
        the range), or None to compute every logit. The range mask comes before the softmax
        there, so the other logits are never used: computing only these (8196 of 59457 for
        image codes) gives the same log-probs for a seventh of the output table's work."""
        cfg = self.cfg
        if cfg.constraint_range is None or cfg.zero_shot:
            return None
        start, end = cfg.constraint_range
        ids = [*range(NUM_SPECIAL), *range(start, min(end, self.model.config.vocab_size))]
        return torch.tensor(ids, device=self.device)

    def _narrow_search(self, allowed: int) -> bool:
        """Whether the search may run over the ``allowed`` ids' columns only (image codes:
        8196 of 59457), with the same results: every rule reads the special ids only, which
        keep their columns (not so forced prefixes, an answer trie or n-gram blocking, which
        index by id), and a draw reads as many random numbers as it has candidates (so of
        sampling only top-k draws, k candidates either way, keep a seed's samples). The other
        ids' log-probs are -inf either way; the masks, log_softmax and top-k of every step
        then touch a seventh of the vocabulary."""
        cfg = self.cfg
        if self.prefix is not None or self.trie is not None or cfg.no_repeat_ngram_size:
            return False
        return not cfg.sampling or 0 < cfg.top_k <= allowed

    # ------------------------------------------------------------ one step's log-probs
    def _log_probs(self, logits: torch.Tensor, tokens: torch.Tensor, step: int,
                   rows_sent: torch.Tensor, narrow: bool = False) -> torch.Tensor:
        """fp32 log-probs [rows, V] after every fairseq rule except the search itself; with
        ``narrow``, [rows, len(allowed ids)] over the allowed ids' columns (the special ids
        first, at their own columns)."""
        cfg = self.cfg
        if cfg.temperature != 1.0:
            logits = logits / cfg.temperature
        if not cfg.zero_shot:  # fine-tuned models: renormalise over the allowed tokens
            logits = self._constrain(logits, tokens, step, rows_sent, narrow)
        lprobs = torch.log_softmax(logits, dim=-1)
        if cfg.zero_shot:
            lprobs = self._constrain(lprobs, tokens, step, rows_sent)

        max_len = self.max_len[rows_sent]
        forced = torch.zeros_like(max_len, dtype=torch.bool)
        if self.prefix is not None and step < self.prefix.shape[1]:
            forced = self.prefix_len[rows_sent].gt(step) & max_len.gt(step)
            if bool(forced.any()):
                want = self.prefix[rows_sent, step].unsqueeze(1)
                keep = lprobs.gather(1, want)
                blocked = torch.full_like(lprobs, _NEG_INF).scatter_(1, want, keep)
                lprobs = torch.where(forced.unsqueeze(1), blocked, lprobs)
        if step < cfg.min_len:  # min length applies where the step is not forced
            lprobs[:, EOS_ID] = lprobs[:, EOS_ID].masked_fill(~forced, _NEG_INF)
        lprobs = lprobs.masked_fill(lprobs.isnan(), _NEG_INF)
        lprobs[:, PAD_ID] = _NEG_INF
        if cfg.unk_penalty:
            lprobs[:, UNK_ID] -= cfg.unk_penalty
        at_max = max_len.le(step)
        if cfg.gen_code:
            code_rows = ~at_max
            if self.code_mask is not None:
                code_rows &= self.code_mask[rows_sent]
            lprobs[:, :NUM_SPECIAL] = lprobs[:, :NUM_SPECIAL].masked_fill(
                code_rows.unsqueeze(1), _NEG_INF)
        if bool(at_max.any()):  # only EOS, with its real log-prob
            eos = lprobs[:, EOS_ID].clone()
            lprobs = lprobs.masked_fill(at_max.unsqueeze(1), _NEG_INF)
            lprobs[:, EOS_ID] = torch.where(at_max, eos, lprobs[:, EOS_ID])
        if cfg.no_repeat_ngram_size > 0:
            _block_repeated_ngrams(lprobs, tokens, cfg.no_repeat_ngram_size)
        return lprobs

    def _constrain(self, x: torch.Tensor, tokens: torch.Tensor, step: int,
                   rows_sent: torch.Tensor, narrow: bool = False) -> torch.Tensor:
        """-inf outside the id range and outside the trie (answer part only). ``narrow``: the
        columns are the range's ids already (:meth:`_log_probs`)."""
        cfg = self.cfg
        if cfg.constraint_range is not None and (cfg.strict_range or not narrow):
            start, end = cfg.constraint_range
            x = x.clone()
            if not narrow:
                x[:, NUM_SPECIAL:start] = _NEG_INF
                x[:, end:] = _NEG_INF
            if cfg.strict_range:
                x[:, [BOS_ID, UNK_ID]] = _NEG_INF
        if self.trie is not None:
            plen = self.prefix_len[rows_sent]
            rows = plen.le(step).nonzero().squeeze(1)  # rows past their prefix
            if rows.numel():
                hist = tokens.index_select(0, rows).tolist()
                starts = (plen.index_select(0, rows) + 1).tolist()
                allowed_r, allowed_c = [], []
                for i, (h, s) in enumerate(zip(hist, starts, strict=True)):
                    ids = self.trie.allowed([BOS_ID, *h[s:]])
                    allowed_r.extend([i] * len(ids))
                    allowed_c.extend(ids)
                blocked = torch.ones(rows.shape[0], x.shape[1], dtype=torch.bool,
                                     device=x.device)
                blocked[torch.tensor(allowed_r, device=x.device),
                        torch.tensor(allowed_c, device=x.device)] = False
                x = x.index_put((rows,), x.index_select(0, rows).masked_fill(blocked, _NEG_INF))
        return x

    # ------------------------------------------------------------ candidate selection
    def _beam_candidates(self, lprobs: torch.Tensor, scores: torch.Tensor, r: int):
        """fairseq BeamSearch.step: top 2*beam over (beam, token) of each sentence."""
        v = lprobs.shape[1]
        if scores.shape[1]:
            lprobs = lprobs + scores[:, -1:]
        flat = lprobs.view(-1, r * v)
        top = flat.topk(min(2 * self.cfg.beam_size, flat.shape[1] - 1), dim=1)
        return top.values, top.indices % v, top.indices // v

    def _sample(self, lprobs: torch.Tensor, scores: torch.Tensor, r: int):
        """One token per slot (beam_size slots per sentence), fairseq Sampling semantics:
        draw from the top-k / top-p restricted distribution, score with the full log-prob."""
        cfg, k = self.cfg, self.cfg.beam_size
        n = lprobs.shape[0] // r
        order = None  # the candidate ids of each row, when the draw is among a few
        if cfg.top_k or cfg.top_p:
            if cfg.top_k:  # a partial sort is enough (image generation: 1024 steps)
                sorted_lp, order = lprobs.topk(min(cfg.top_k, lprobs.shape[1]), dim=1)
            else:
                sorted_lp, order = lprobs.sort(dim=1, descending=True)
            keep = torch.isfinite(sorted_lp)
            weights = sorted_lp.exp()
            if cfg.top_p:
                # smallest prefix reaching top_p: keep a token while the mass before it < p
                keep &= (weights.cumsum(1) - weights).lt(cfg.top_p)
            # drawn among the k candidates, not the whole vocabulary: the same distribution
            # (fairseq's Sampling draws from the top-k too), a fraction of the work
            probs = weights.masked_fill(~keep, 0.0)
        else:  # _log_probs leaves no NaN and no +inf: exp(-inf) is 0, as masking would set
            probs = lprobs.exp()
        empty = probs.sum(1).le(0)  # e.g. finished slots: any draw will do, it is ignored
        if bool(empty.any()):
            probs[empty, 0] = 1.0
        draws = k if r == 1 and k > 1 else 1
        # one draw per row over the whole vocabulary: PyTorch's CPU kernel draws it through an
        # exponential variate per token (24 rows x 59,457 ids: 24 ms on 2 cores); with two
        # draws it searches the cumulative distribution (1 ms), and the first of two
        # independent draws is one draw. Top-k / top-p rows (a few candidates) keep one.
        wide = draws == 1 and order is None and probs.device.type == "cpu"
        idx = torch.multinomial(probs, 2 if wide else draws, replacement=True,
                                generator=self.generator)[:, :draws]
        if order is not None:
            idx = order.gather(1, idx)
        idx = idx.masked_fill(empty.view(-1, 1), EOS_ID)
        if draws > 1:
            beams = torch.zeros(n, k, dtype=torch.long, device=lprobs.device)
            chosen = lprobs.gather(1, idx)
        else:
            idx = idx.view(n, k)
            beams = torch.arange(k, device=lprobs.device).expand(n, k)
            chosen = lprobs.gather(1, idx.view(-1, 1)).view(n, k)
        if scores.shape[1]:
            chosen = chosen + scores[:, -1].view(n, k)
        return chosen, idx, beams

    def _finalize(self, top_eos: torch.Tensor, cand_scores: torch.Tensor,
                  cand_beams: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor,
                  step: int, r: int, sent: torch.Tensor,
                  finalized: list[list[Hypothesis]]) -> None:
        """Store every EOS candidate (in candidate order) until a sentence holds beam_size."""
        cfg = self.cfg
        pos = top_eos.nonzero().tolist()
        sent_ids = sent.tolist()
        for n, c in pos:
            s = sent_ids[n]
            if len(finalized[s]) >= cfg.beam_size:
                continue
            row = n * r + int(cand_beams[n, c])
            eos_score = cand_scores[n, c]
            cum = torch.cat([scores[row], eos_score.view(1)])
            positional = torch.cat([cum[:1], cum[1:] - cum[:-1]])  # as fairseq: from the sums
            score = float(eos_score)
            if cfg.normalize_scores:
                score /= (step + 1) ** cfg.lenpen
            hyp_tokens = torch.cat([tokens[row, 1:], tokens.new_tensor([EOS_ID])])
            finalized[s].append(Hypothesis(hyp_tokens, score, positional))


def _block_repeated_ngrams(lprobs: torch.Tensor, tokens: torch.Tensor, n: int) -> None:
    """Ban every token that would repeat an n-gram of the history (BOS and prefix included)."""
    t = tokens.shape[1]
    if n == 1:
        lprobs.scatter_(1, tokens, _NEG_INF)
        return
    if t < n:
        return
    key = tokens[:, t - n + 1:]  # the last n-1 tokens
    windows = tokens[:, :t - 1].unfold(1, n - 1, 1)  # starts 0 .. t-n: each has a follower
    hit = (windows == key.unsqueeze(1)).all(-1)
    rows, starts = hit.nonzero(as_tuple=True)
    if rows.numel():
        lprobs[rows, tokens[rows, starts + n - 1]] = _NEG_INF


# ---------------------------------------------------------------- all-candidate scoring
@torch.no_grad()
def score_candidates(model: OFAModel, encoder_out: EncoderOutput,
                     decoder_prompts: Sequence[Sequence[int]] | torch.Tensor,
                     candidates: Sequence[Sequence[int]], trie: Trie | None = None,
                     chunk_size: int = 20) -> torch.Tensor:
    """Summed log-prob of every candidate answer for every item: [B, n_candidates] (fp32).

    Official all-candidate VQA / SNLI-VE scoring (OFA-Sys/OFA, ``tasks/mm_tasks/vqa_gen.py``
    ``valid_step`` with ``val_inference_type=allcand``): decoder input =
    ``prompt + answer``, target = ``prompt[1:] + answer + [EOS]``; only the answer tokens and
    EOS are scored (no length normalisation); with a trie the logits at answer positions are
    masked to ``trie.allowed([BOS] + answer so far)`` before log_softmax.
    ``encoder_out`` holds B rows (one encoder pass per image); ``decoder_prompts`` gives each
    item's ``[BOS] + question tokens`` (lists, or a [B, P] tensor right-padded with PAD);
    ``candidates`` are answer ids without BOS/EOS (:func:`encode_answers`).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    b = encoder_out.hidden.shape[0]
    if isinstance(decoder_prompts, torch.Tensor):
        if decoder_prompts.dim() != 2:
            raise InputError("decoder_prompts tensor must be [batch, length]")
        prompts = [[t for t in row if t != PAD_ID] for row in decoder_prompts.tolist()]
    else:
        prompts = [as_id_list(p, "decoder prompt") for p in decoder_prompts]
    if len(prompts) != b:
        raise InputError(f"{len(prompts)} decoder prompts for {b} encoder rows")
    if any(not p or p[0] != BOS_ID for p in prompts):
        raise InputError("every decoder prompt must start with BOS (0)")
    answers = [as_id_list(a, "candidate") for a in candidates]
    if not answers or any(not a for a in answers):
        raise InputError("candidates must be a non-empty list of non-empty id sequences")
    device = encoder_out.hidden.device

    out = torch.empty(b, len(answers), dtype=torch.float32, device=device)
    for c0 in range(0, len(answers), chunk_size):
        if c0:
            _checkpoint()
        chunk = answers[c0:c0 + chunk_size]
        m = len(chunk)
        enc = encoder_out.index_select(torch.arange(b, device=device).repeat_interleave(m))
        rows = [(p, a) for p in prompts for a in chunk]  # item-major, like the official code
        width = max(len(p) + len(a) for p, a in rows)
        dec_in = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        # (row, position, target) of every scored token; allowed ids per scored token
        sel_row, sel_pos, target, allowed = [], [], [], []
        for i, (p, a) in enumerate(rows):
            dec_in[i, :len(p) + len(a)] = torch.tensor(p + a)
            for j, tok in enumerate([*a, EOS_ID]):
                sel_row.append(i)
                sel_pos.append(len(p) - 1 + j)
                target.append(tok)
                if trie is not None:
                    allowed.append(trie.allowed([BOS_ID, *a[:j]]))
        logits = model.decode(dec_in.to(device), enc)
        picked = logits[torch.tensor(sel_row, device=device),
                        torch.tensor(sel_pos, device=device)].float()
        if trie is not None:
            blocked = torch.ones_like(picked, dtype=torch.bool)
            rr = [i for i, ids in enumerate(allowed) for _ in ids]
            cc = [t for ids in allowed for t in ids]
            blocked[torch.tensor(rr, device=device), torch.tensor(cc, device=device)] = False
            picked = picked.masked_fill(blocked, _NEG_INF)
        lp = F.log_softmax(picked, dim=-1).gather(
            1, torch.tensor(target, device=device).unsqueeze(1)).squeeze(1)
        sums = torch.zeros(len(rows), dtype=torch.float32, device=device)
        sums.index_add_(0, torch.tensor(sel_row, device=device), lp)
        out[:, c0:c0 + m] = sums.view(b, m)
    return out
