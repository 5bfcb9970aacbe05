"""Self-critical sequence training (SCST): optimising captions for CIDEr-D directly.

What OFA's caption stage 2 does (OFA-Sys/OFA criterions/scst_loss.py): the model, in eval
mode, captions every training image several times (the official ``--scst-args``: the 5 beams
of beam search, at most 16 tokens, no repeated 3-gram); each caption's reward is its CIDEr-D
against the image's references (document frequencies of the whole training set, fixed:
:mod:`ofa.metrics.cider_d`) minus the mean reward of the image's other captions (the
leave-one-out baseline); the loss is ``-sum(reward * log p(token))`` over the captions'
tokens, in train mode, normalised by their number.

Every piece is local to one image (its captions, its references, its baseline) and the
frequencies are fixed, so N processes compute exactly the rewards one process computes for
the same images; only the normalisation and the logged means are summed across them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..generate import GenerationConfig, Hypothesis
from ..metrics.cider_d import DocumentFrequency, cider_d
from ..tasks.text import pre_caption, strip_punctuation
from ..tokenizer import BOS, PAD, OFATokenizer, pad_batch
from .config import ScstSettings

__all__ = ["ScstReward", "gather_references", "leave_one_out", "scst_loss", "scst_sequences"]


def gather_references(records: Sequence[dict]) -> list[dict]:
    """``records`` with each single-caption record of an image file given all the captions
    of that image's records as its references (a JSONL file has one caption per record; an
    official stage-2 TSV row already holds all of its image's, "&&"-joined)."""
    by_image: dict[str, list[str]] = {}
    for r in records:
        if r.get("task") == "caption" and isinstance(r.get("image"), str) and isinstance(
                r.get("caption"), str):
            by_image.setdefault(r["image"], []).append(r["caption"])
    return [{**r, "caption": by_image[r["image"]]} if r.get("task") == "caption" and
            isinstance(r.get("image"), str) and isinstance(r.get("caption"), str) else r
            for r in records]


def leave_one_out(scores: Sequence[float]) -> np.ndarray:
    """Each score minus the mean of the others (one image's captions). A lone caption has no
    baseline to compare with: its reward is 0."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 2:
        return np.zeros_like(s)
    return s - (s.sum() - s) / (len(s) - 1)


class ScstReward:
    """Generation settings and rewards of one SCST run (``settings``: the config's ``scst``)."""

    def __init__(self, settings: ScstSettings, tokenizer: OFATokenizer) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.df = DocumentFrequency.load(settings.df)

    def generation_config(self) -> GenerationConfig:
        s = self.settings
        common = {"beam_size": s.samples, "nbest": s.samples, "max_len_b": s.max_len_b,
                  "min_len": 1, "no_repeat_ngram_size": s.no_repeat_ngram_size}
        if s.search == "sampling":
            return GenerationConfig(**common, sampling=True, top_k=s.top_k,
                                    temperature=s.temperature)
        return GenerationConfig(**common)

    def captions(self, hyps: Sequence[Hypothesis]) -> list[str]:
        """The captions as the caption task reads them (decoded, punctuation stripped)."""
        return [strip_punctuation(self.tokenizer.decode(h.tokens.tolist())) for h in hyps]

    def rewards(self, captions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per image: its captions' CIDEr-D scores and their leave-one-out rewards."""
        flat = [c for caps in captions for c in caps]
        # the references as `ofa data cider-df` counted them
        refs = [[pre_caption(t) for t in r] for caps, r in zip(captions, references,
                                                                 strict=True) for _ in caps]
        scores = cider_d(flat, refs, self.df) if flat else np.zeros(0)
        out_scores, out_rewards, start = [], [], 0
        for caps in captions:
            s = scores[start:start + len(caps)]
            start += len(caps)
            out_scores.append(s)
            out_rewards.append(leave_one_out(s))
        return out_scores, out_rewards


def scst_sequences(hyps: Sequence[Hypothesis]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors of generated captions: decoder input ``BOS + tokens[:-1]`` and
    target ``tokens`` (which end with EOS), right-padded with PAD."""
    tokens = [h.tokens.tolist() for h in hyps]
    return pad_batch([[BOS, *t[:-1]] for t in tokens]), pad_batch(tokens)


def scst_loss(logits: torch.Tensor, target: torch.Tensor, rewards: torch.Tensor
              ) -> torch.Tensor:
    """``-sum(reward * log p(token))`` over the non-PAD tokens of ``target`` [R, T].
    ``logits`` [N, V] are those tokens' (row-major), ``rewards`` [R] one per caption."""
    mask = target.ne(PAD)
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    token_lprobs = lprobs.gather(-1, target[mask].unsqueeze(-1)).squeeze(-1)
    token_rewards = rewards.to(token_lprobs.dtype)[:, None].expand_as(target)[mask]
    return -(token_lprobs * token_rewards).sum()
