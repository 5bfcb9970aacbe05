"""OFA's training criterion: label-smoothed cross-entropy with constraints and drop-worst.

Mirrors ``adjust_label_smoothed_cross_entropy`` of the official code (OFA-Sys/OFA
``criterions/label_smoothed_cross_entropy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Ids 0..3 (bos, pad, eos, unk) always stay allowed under a constraint range, as in the
# official criterion, which only masks logits[..., 4:start] and logits[..., end:].
NUM_SPECIAL_IDS = 4


@dataclass
class LossOutput:
    """Summed loss terms of one batch; the caller normalises by the (global) ``ntokens``."""

    loss: torch.Tensor  # scalar, sum over kept tokens
    nll: torch.Tensor  # scalar, NLL (no smoothing, but times weights) summed over kept tokens
    ntokens: int  # tokens kept after drop-worst
    correct: int  # kept tokens whose target logit is the largest (the argmax; ties count)


class _SmoothedNLL(torch.autograd.Function):
    """Per-row ``a * nll + b * smooth`` over the full vocabulary, from the logits directly.

    The unconstrained case is most of the training time of a small model with OFA's 59k-token
    vocabulary. Rows are processed in cache-sized chunks and no fp32 log-probs are kept; the
    gradient is d/dx_j = (a + V b) softmax_j - b - a [j = target]. Also returns the argmax hit
    (the target's logit is the largest; ties count).
    """

    CHUNK_ELEMENTS = 1 << 20  # fp32 elements per chunk (4 MB): stays in cache between passes

    @staticmethod
    def _chunk_rows(vocab: int) -> int:
        return max(1, _SmoothedNLL.CHUNK_ELEMENTS // max(vocab, 1))

    @staticmethod
    def forward(ctx, logits, target, a, b):  # type: ignore[override]
        n, vocab = logits.shape
        lse = torch.empty(n, device=logits.device)
        picked, total = torch.empty_like(lse), torch.empty_like(lse)
        hit = torch.empty(n, dtype=torch.bool, device=logits.device)
        step = _SmoothedNLL._chunk_rows(vocab)
        for i in range(0, n, step):
            x = logits[i:i + step].float()
            t = target[i:i + step]
            lse[i:i + step] = torch.logsumexp(x, dim=-1)
            picked[i:i + step] = x.gather(-1, t.unsqueeze(-1)).squeeze(-1)
            total[i:i + step] = x.sum(-1)
            hit[i:i + step] = picked[i:i + step] >= x.amax(-1)  # amax: cheaper than argmax
        nll = lse - picked
        smooth = vocab * lse - total
        ctx.save_for_backward(logits, target, a, b, lse)
        ctx.mark_non_differentiable(nll, hit)
        return a * nll + b * smooth, nll, hit

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll, _grad_hit):  # type: ignore[override]
        logits, target, a, b, lse = ctx.saved_tensors
        ga, gb = grad_loss * a, grad_loss * b
        scale = ga + logits.shape[-1] * gb
        grad = torch.empty_like(logits)
        step = _SmoothedNLL._chunk_rows(logits.shape[-1])
        for i in range(0, logits.shape[0], step):
            rows = slice(i, i + step)
            g = torch.exp(logits[rows].float() - lse[rows].unsqueeze(-1))
            g.mul_(scale[rows].unsqueeze(-1)).sub_(gb[rows].unsqueeze(-1))
            g.scatter_add_(-1, target[rows].unsqueeze(-1), -ga[rows].unsqueeze(-1))
            grad[rows] = g
        return grad, None, None, None


def range_mask(vocab_size: int, start: int, end: int, device: torch.device | None = None
               ) -> torch.Tensor:
    """[V] bool mask of a ``constraint_range``: ids 0..3 and ``start <= id < end``."""
    ids = torch.arange(vocab_size, device=device)
    return (ids < NUM_SPECIAL_IDS) | ((ids >= start) & (ids < end))


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    epsilon: float,
    *,
    weights: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    allowed_rows: torch.Tensor | None = None,
    constraint_range: tuple[int, int] | None = None,
    code_rows: torch.Tensor | None = None,
    code_range: tuple[int, int] | None = None,
    code_logits: torch.Tensor | None = None,
    drop_worst_ratio: float = 0.0,
) -> LossOutput:
    """Label-smoothed NLL over N target positions (pads already removed).

    ``logits`` [N, V] (any float dtype; the softmax runs in fp32), ``target`` [N]. ``weights``
    [N] is the per-token confidence multiplying the log-probs (the official ``conf``).
    ``allowed`` [N, V] (trie masks) and/or ``constraint_range`` restrict the vocabulary: logits
    outside are set to -inf and the smoothing mass is spread over the allowed ids only, with
    ``eps_i = epsilon / (num_allowed - 1 + 1e-6)``; unconstrained, ``eps_i = epsilon / (V - 1)``.
    With both given, their intersection is used (the official code assumes trie masks lie inside
    the range). With ``allowed_rows`` [M] (row indices), ``allowed`` is [M, V] and constrains
    only those rows: a batch that mixes trie-constrained answers with free captions.
    ``drop_worst_ratio`` r keeps the ``int(N * (1 - r))`` lowest-loss tokens; pass 0 until the
    official ``drop_worst_after`` update count is exceeded. As officially, ``nll`` is
    weighted by ``weights`` too; ``correct`` counts kept tokens only.
    ``code_rows`` [K] (disjoint from ``allowed_rows``) are constrained to ids 0..3 and
    ``code_range`` [start, end), image codes: the same terms as that range mask gives, computed
    on those columns only (a drawing's target is 1,024 codes, each allowed 8,196 ids of 59k).
    ``code_logits`` [K, 4 + end - start] are those columns' logits, projected on their own
    (``OFAModel.forward`` with ``code_rows``); then ``logits`` holds the other rows only.
    """
    if code_rows is not None:
        terms = _with_code_rows(logits, target, epsilon, weights, allowed, allowed_rows,
                                constraint_range, code_rows, code_range, code_logits)
    else:
        terms = _row_terms(logits, target, epsilon, weights, allowed, allowed_rows,
                           constraint_range)
    return _total(*terms, drop_worst_ratio)


def _row_terms(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
               weights: torch.Tensor | None, allowed: torch.Tensor | None,
               allowed_rows: torch.Tensor | None, constraint_range: tuple[int, int] | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token (loss, weighted nll, argmax hit) without image-code rows."""
    n, vocab = logits.shape
    rmask = (range_mask(vocab, *constraint_range, device=logits.device)
             if constraint_range is not None else None)
    if allowed_rows is None:
        mask = allowed
        if rmask is not None:
            mask = rmask.expand(n, vocab) if mask is None else mask & rmask
        loss, nll, hit = _token_terms(logits, target, epsilon, weights, mask)
    else:
        if allowed is None or allowed.shape != (allowed_rows.numel(), vocab):
            raise ValueError("allowed_rows needs allowed of shape [len(allowed_rows), V]")
        rows = allowed_rows.to(logits.device)
        w = (torch.ones(n, device=logits.device) if weights is None
             else weights.to(device=logits.device, dtype=torch.float32))
        # every row on the free path, the constrained ones with weight 0 (no loss, no
        # gradient), then their terms computed on their own and put in their places
        free_w = w.index_fill(0, rows, 0.0)
        free_mask = None if rmask is None else rmask.expand(n, vocab)
        loss, nll, hit = _token_terms(logits, target, epsilon, free_w, free_mask)
        mask = allowed if rmask is None else allowed & rmask
        c_loss, c_nll, c_hit = _token_terms(logits[rows], target[rows], epsilon, w[rows], mask)
        loss, nll = loss.index_copy(0, rows, c_loss), nll.index_copy(0, rows, c_nll)
        hit = hit.index_copy(0, rows, c_hit)
    return loss, nll, hit


def _total(loss: torch.Tensor, nll: torch.Tensor, hit: torch.Tensor,
           drop_worst_ratio: float) -> LossOutput:
    """Per-token terms summed, after dropping the worst ``drop_worst_ratio`` of them."""
    if drop_worst_ratio > 0:
        k = int(loss.numel() * (1 - drop_worst_ratio))  # the official code's float expression
        loss, keep = torch.topk(loss, k=k, largest=False)
        nll, hit = nll[keep], hit[keep]
    correct = int(hit.sum().item())
    return LossOutput(loss=loss.sum(), nll=nll.sum(), ntokens=int(loss.numel()), correct=correct)


def _with_code_rows(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                    weights: torch.Tensor | None, allowed: torch.Tensor | None,
                    allowed_rows: torch.Tensor | None,
                    constraint_range: tuple[int, int] | None, code_rows: torch.Tensor,
                    code_range: tuple[int, int] | None, code_logits: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token terms with image-code rows: the other rows as :func:`_row_terms` gives them,
    the code rows on the columns they allow, all in row order."""
    if code_range is None:
        raise ValueError("code_rows needs code_range")
    start, end = code_range
    n = target.shape[0]
    if code_logits is not None and (
            code_logits.shape != (code_rows.numel(), NUM_SPECIAL_IDS + end - start)
            or logits.shape[0] != n - code_rows.numel()):
        raise ValueError("code_logits needs [len(code_rows), 4 + codes] and logits of the "
                         "other rows")
    device = logits.device
    code_rows = code_rows.to(device)
    w = (torch.ones(n, device=device) if weights is None
         else weights.to(device=device, dtype=torch.float32))
    is_code = torch.zeros(n, dtype=torch.bool, device=device)
    is_code[code_rows] = True
    other = (~is_code).nonzero().flatten()
    loss = torch.zeros(n, device=device)
    nll, hit = torch.zeros_like(loss), torch.zeros(n, dtype=torch.bool, device=device)
    if other.numel():
        # answer rows keep their places among the others: renumber them
        position = torch.full((n,), -1, dtype=torch.long, device=device)
        position[other] = torch.arange(other.numel(), device=device)
        rows = None if allowed_rows is None else position[allowed_rows.to(device)]
        o_logits = logits if code_logits is not None else logits[other]
        o_loss, o_nll, o_hit = _row_terms(o_logits, target[other], epsilon, w[other],
                                          allowed, rows, constraint_range)
        loss, nll = loss.index_copy(0, other, o_loss), nll.index_copy(0, other, o_nll)
        hit = hit.index_copy(0, other, o_hit)
    # the specials and the codes, side by side: the target ids renumbered to these columns
    columns = code_logits if code_logits is not None else torch.cat(
        [logits[code_rows, :NUM_SPECIAL_IDS], logits[code_rows, start:end]], 1)
    t = target[code_rows]
    local = torch.where(t < NUM_SPECIAL_IDS, t, t - start + NUM_SPECIAL_IDS)
    eps_i = epsilon / (columns.shape[1] - 1 + 1e-6)  # as _masked_loss counts a range mask
    wc = w[code_rows]
    c_loss, c_nll, c_hit = _SmoothedNLL.apply(columns, local, (1.0 - epsilon - eps_i) * wc,
                                              eps_i * wc)
    loss, nll = loss.index_copy(0, code_rows, c_loss), nll.index_copy(0, code_rows, c_nll * wc)
    hit = hit.index_copy(0, code_rows, c_hit)
    return loss, nll, hit


def _token_terms(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                 weights: torch.Tensor | None, mask: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token (loss, weighted nll, argmax hit); ``mask`` [N, V] or None (full vocabulary)."""
    n, vocab = logits.shape
    # a -inf logit (an excluded id) takes the general path; min() is cheaper than isneginf
    has_neg_inf = logits.numel() > 0 and bool(logits.min() == float("-inf"))
    if mask is None and not has_neg_inf:
        # the common case: fused, same value and gradient as the general path below
        w = (torch.ones(n, device=logits.device) if weights is None
             else weights.to(device=logits.device, dtype=torch.float32))
        eps_i = epsilon / (vocab - 1)
        loss, nll, hit = _SmoothedNLL.apply(logits, target, (1.0 - epsilon - eps_i) * w,
                                            eps_i * w)
        return loss, nll * w, hit
    return _masked_loss(logits, target, epsilon, weights, mask)


def _masked_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                 weights: torch.Tensor | None, mask: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token (loss, weighted nll, argmax hit) when part of the vocabulary is excluded."""
    x = logits.float()
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    lprobs = F.log_softmax(x, dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # Zero the excluded entries before summing: they are -inf, and -inf must neither reach the
    # sum nor meet a zero weight (nan). Unconstrained, only -inf logits are excluded this way,
    # where the official code would return an infinite loss; eps_i still counts all V ids.
    excluded = ~mask if mask is not None else torch.isneginf(lprobs)
    smooth = -lprobs.masked_fill(excluded, 0.0).sum(-1)
    if mask is not None:
        eps_i: torch.Tensor | float = epsilon / (mask.sum(-1).float() - 1 + 1e-6)
    else:
        eps_i = epsilon / (x.shape[-1] - 1)
    if weights is not None:
        # the official code multiplies lprobs by conf; both terms are linear in lprobs
        w = weights.to(device=nll.device, dtype=torch.float32)
        nll, smooth = nll * w, smooth * w
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    with torch.no_grad():
        hit = x.gather(-1, target.unsqueeze(-1)).squeeze(-1) >= x.amax(-1)
    return loss, nll, hit
