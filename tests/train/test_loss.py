"""Label-smoothed cross-entropy against hand-written formulas (OFA-Sys/OFA
``criterions/label_smoothed_cross_entropy.py``)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ofa.train.loss import _SmoothedNLL, label_smoothed_cross_entropy, range_mask


def hand_token_loss(row: list[float], target: int, eps: float, allowed: list[int],
                    weight: float = 1.0, extra: float = 0.0) -> tuple[float, float]:
    """(loss, nll) of one token by explicit loops; ``extra`` is the official 1e-6 under a
    constraint (0 unconstrained)."""
    lse = math.log(sum(math.exp(row[v]) for v in allowed))
    lp = {v: (row[v] - lse) * weight for v in allowed}
    nll = -lp[target]
    smooth = -sum(lp[v] for v in allowed)
    eps_i = eps / (len(allowed) - 1 + extra)
    return (1 - eps - eps_i) * nll + eps_i * smooth, nll


def test_epsilon_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 7), torch.randint(0, 7, (6,))
    out = label_smoothed_cross_entropy(logits, target, 0.0)
    ref = F.cross_entropy(logits, target, reduction="sum")
    torch.testing.assert_close(out.loss, ref)
    torch.testing.assert_close(out.nll, ref)
    assert out.ntokens == 6
    assert out.correct == int((logits.argmax(-1) == target).sum())


def test_smoothing_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.0],
                           [0.3, -0.2, 2.5, 1.0, -3.0],
                           [0.0, 0.0, 0.0, 0.0, 4.0]])
    target = torch.tensor([1, 3, 4])
    out = label_smoothed_cross_entropy(logits, target, 0.1)
    loss = nll = 0.0
    for row, t in zip(logits.tolist(), target.tolist(), strict=True):
        token_loss, token_nll = hand_token_loss(row, t, 0.1, list(range(5)))
        loss, nll = loss + token_loss, nll + token_nll
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(loss, rel=1e-6)
    assert out.nll.item() == pytest.approx(nll, rel=1e-6)
    assert out.ntokens == 3 and out.correct == 2


def test_constraint_range_by_hand_and_gradients():
    torch.manual_seed(1)
    logits = torch.randn(4, 10, requires_grad=True)
    target = torch.tensor([6, 7, 8, 2])
    out = label_smoothed_cross_entropy(logits, target, 0.1, constraint_range=(6, 9))
    allowed = [0, 1, 2, 3, 6, 7, 8]  # ids 0..3 always stay allowed
    expected = sum(hand_token_loss(row, t, 0.1, allowed, extra=1e-6)[0]
                   for row, t in zip(logits.tolist(), target.tolist(), strict=True))
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    out.loss.backward()
    assert torch.all(logits.grad[:, [4, 5, 9]] == 0)
    assert torch.all(logits.grad[:, allowed] != 0)


def test_range_mask():
    assert range_mask(10, 6, 9).nonzero().flatten().tolist() == [0, 1, 2, 3, 6, 7, 8]


def test_allowed_mask_matches_range_and_per_row_masks():
    torch.manual_seed(2)
    logits, target = torch.randn(5, 12), torch.tensor([6, 7, 8, 9, 0])
    by_range = label_smoothed_cross_entropy(logits, target, 0.1, constraint_range=(5, 10))
    mask = range_mask(12, 5, 10).expand(5, 12).clone()
    by_mask = label_smoothed_cross_entropy(logits, target, 0.1, allowed=mask)
    torch.testing.assert_close(by_mask.loss, by_range.loss)
    torch.testing.assert_close(by_mask.nll, by_range.nll)
    # rows with different allowed sets (trie masks): each row uses its own count
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [1, 2, 3]] = True
    mask[1, [0, 4]] = True
    logits2, target2 = torch.randn(2, 6), torch.tensor([2, 4])
    out = label_smoothed_cross_entropy(logits2, target2, 0.2, allowed=mask)
    expected = (hand_token_loss(logits2[0].tolist(), 2, 0.2, [1, 2, 3], extra=1e-6)[0]
                + hand_token_loss(logits2[1].tolist(), 4, 0.2, [0, 4], extra=1e-6)[0])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_weights_scale_each_token():
    torch.manual_seed(3)
    logits, target = torch.randn(4, 8), torch.randint(0, 8, (4,))
    weights = torch.tensor([1.0, 2.0, 0.5, 0.0])
    out = label_smoothed_cross_entropy(logits, target, 0.1, weights=weights)
    expected = sum(hand_token_loss(row, t, 0.1, list(range(8)), weight=w)[0]
                   for row, t, w in zip(logits.tolist(), target.tolist(), weights.tolist(),
                                        strict=True))
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    single = [label_smoothed_cross_entropy(logits[i:i + 1], target[i:i + 1], 0.1).loss
              for i in range(4)]
    torch.testing.assert_close(out.loss, sum(w * s for w, s in zip(weights, single,
                                                                     strict=True)))


def test_drop_worst_keeps_lowest_losses():
    torch.manual_seed(4)
    logits, target = torch.randn(10, 6), torch.randint(0, 6, (10,))
    per_token = torch.stack([
        label_smoothed_cross_entropy(logits[i:i + 1], target[i:i + 1], 0.1).loss
        for i in range(10)])
    nll = F.cross_entropy(logits, target, reduction="none")
    out = label_smoothed_cross_entropy(logits, target, 0.1, drop_worst_ratio=0.2)
    keep = per_token.argsort()[:8]  # int(10 * 0.8) = 8 tokens
    assert out.ntokens == 8
    torch.testing.assert_close(out.loss, per_token[keep].sum())
    torch.testing.assert_close(out.nll, nll[keep].sum())
    assert out.correct == int((logits.argmax(-1) == target)[keep].sum())


def test_bf16_logits_give_float32_loss():
    torch.manual_seed(5)
    logits, target = torch.randn(8, 50) * 3, torch.randint(0, 50, (8,))
    ref = label_smoothed_cross_entropy(logits, target, 0.1)
    half = logits.bfloat16().requires_grad_()
    out = label_smoothed_cross_entropy(half, target, 0.1)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, ref.loss, rtol=2e-2, atol=0.0)
    # the only difference is the bf16 rounding of the inputs
    exact = label_smoothed_cross_entropy(half.detach().float(), target, 0.1)
    torch.testing.assert_close(out.loss, exact.loss)
    out.loss.backward()
    assert half.grad.dtype == torch.bfloat16


def test_no_nan_with_minus_inf_logits():
    torch.manual_seed(6)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[:, [2, 5, 7]] = True
    logits = torch.randn(3, 9).masked_fill(~mask, float("-inf")).requires_grad_()
    target = torch.tensor([2, 5, 7])
    weights = torch.tensor([1.0, 0.0, 2.0])
    for kwargs in ({"allowed": mask}, {}):  # unconstrained: -inf entries are skipped too
        out = label_smoothed_cross_entropy(logits, target, 0.1, weights=weights, **kwargs)
        assert torch.isfinite(out.loss) and torch.isfinite(out.nll)
        (grad,) = torch.autograd.grad(out.loss, logits)
        assert torch.isfinite(grad).all()
        assert torch.all(grad[~mask] == 0)


def test_empty_batch():
    logits = torch.randn(0, 7, requires_grad=True)
    out = label_smoothed_cross_entropy(logits, torch.zeros(0, dtype=torch.long), 0.1)
    assert out.loss.item() == 0.0 and out.ntokens == 0 and out.correct == 0
    out.loss.backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_full_vocab_path_matches_log_softmax(dtype, monkeypatch):
    """The fused unconstrained loss gives the log-softmax formula's values and gradients."""
    torch.manual_seed(0)
    n, vocab, eps = 7, 50, 0.1
    base = (torch.randn(n, vocab) * 3).to(dtype)
    target = torch.randint(0, vocab, (n,))
    weights = torch.rand(n)
    upstream = torch.rand(n)  # per-token gradient, as after drop-worst or a loss scale

    monkeypatch.setattr(_SmoothedNLL, "CHUNK_ELEMENTS", 3 * vocab)  # 3 chunks, last one short
    fused_in = base.clone().requires_grad_()
    out = label_smoothed_cross_entropy(fused_in, target, eps, weights=weights)
    out.loss.backward()

    ref_in = base.clone().requires_grad_()
    lprobs = F.log_softmax(ref_in.float(), dim=-1)
    eps_i = eps / (vocab - 1)
    nll = -lprobs.gather(-1, target[:, None]).squeeze(-1) * weights
    smooth = -lprobs.sum(-1) * weights
    ref = (1 - eps - eps_i) * nll + eps_i * smooth
    ref.sum().backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert out.loss.dtype == torch.float32
    assert torch.allclose(out.loss, ref.sum(), atol=tol, rtol=tol)
    assert torch.allclose(out.nll, nll.sum(), atol=tol, rtol=tol)
    assert out.correct == int((base.float().argmax(-1) == target).sum())
    assert torch.allclose(fused_in.grad.float(), ref_in.grad.float(), atol=tol, rtol=tol)

    # a non-uniform upstream gradient reaches each row with its own factor
    fused_in.grad = None
    ref_in.grad = None
    w = weights.float()
    per_row, _, _ = _SmoothedNLL.apply(fused_in, target, (1 - eps - eps_i) * w, eps_i * w)
    (per_row * upstream).sum().backward()
    lprobs = F.log_softmax(ref_in.float(), dim=-1)
    ref = ((1 - eps - eps_i) * -lprobs.gather(-1, target[:, None]).squeeze(-1)
           - eps_i * lprobs.sum(-1)) * weights
    (ref * upstream).sum().backward()
    assert torch.allclose(fused_in.grad.float(), ref_in.grad.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_allowed_rows_constrain_only_those_rows(epsilon):
    """A mixed batch: rows 1 and 3 trie-constrained, the rest over the full vocabulary; value
    and gradient equal the dense [N, V] mask that leaves the free rows all True."""
    torch.manual_seed(5)
    logits, target = torch.randn(5, 40), torch.tensor([7, 3, 30, 12, 0])
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0, 1.5])
    rows = torch.tensor([1, 3])
    sparse = torch.zeros(2, 40, dtype=torch.bool)
    sparse[0, [3, 9, 11]] = True
    sparse[1, [2, 12]] = True
    dense = torch.ones(5, 40, dtype=torch.bool)
    dense[rows] = sparse
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    by_rows = label_smoothed_cross_entropy(a, target, epsilon, weights=weights, allowed=sparse,
                                           allowed_rows=rows)
    by_dense = label_smoothed_cross_entropy(b, target, epsilon, weights=weights, allowed=dense)
    torch.testing.assert_close(by_rows.loss, by_dense.loss)
    torch.testing.assert_close(by_rows.nll, by_dense.nll)
    assert by_rows.correct == by_dense.correct and by_rows.ntokens == 5
    by_rows.loss.backward()
    by_dense.loss.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.all(a.grad[1, ~sparse[0]] == 0) and torch.all(a.grad[0] != 0)
    # the constrained row by hand: smoothing over its 3 allowed ids only
    expected = hand_token_loss(logits[1].tolist(), 3, epsilon, [3, 9, 11], weight=0.5,
                               extra=1e-6)[0]
    free = label_smoothed_cross_entropy(logits[[0, 2, 4]], target[[0, 2, 4]], epsilon,
                                        weights=weights[[0, 2, 4]]).loss
    hand3 = hand_token_loss(logits[3].tolist(), 12, epsilon, [2, 12], extra=1e-6)[0]
    assert by_rows.loss.item() == pytest.approx(free.item() + expected + hand3, rel=1e-5)


@pytest.mark.parametrize(("epsilon", "drop"), [(0.1, 0.0), (0.0, 0.0), (0.1, 0.3)])
def test_code_rows_equal_their_range_mask_on_the_full_vocabulary(epsilon, drop):
    """Image-code rows computed on their columns only (the specials and the code range) give
    the value and gradient of the same rows under a range mask over the whole vocabulary, in
    a batch that also holds free rows and a trie-constrained row."""
    torch.manual_seed(6)
    vocab, start, end = 60, 20, 44
    logits = torch.randn(7, vocab)
    target = torch.tensor([5, 21, 43, 2, 9, 30, 11])  # rows 1, 2, 3, 5 are code rows
    weights = torch.tensor([1.0, 1.0, 0.5, 1.0, 2.0, 1.0, 1.0])
    code = torch.tensor([1, 2, 3, 5])
    answer = torch.tensor([6])
    answer_mask = torch.zeros(1, vocab, dtype=torch.bool)
    answer_mask[0, [11, 12, 50]] = True
    dense_rows = torch.tensor([1, 2, 3, 5, 6])
    dense = torch.cat([range_mask(vocab, start, end).expand(4, vocab), answer_mask])
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    fast = label_smoothed_cross_entropy(a, target, epsilon, weights=weights, allowed=answer_mask,
                                        allowed_rows=answer, code_rows=code,
                                        code_range=(start, end), drop_worst_ratio=drop)
    slow = label_smoothed_cross_entropy(b, target, epsilon, weights=weights, allowed=dense,
                                        allowed_rows=dense_rows, drop_worst_ratio=drop)
    torch.testing.assert_close(fast.loss, slow.loss)
    torch.testing.assert_close(fast.nll, slow.nll)
    assert (fast.ntokens, fast.correct) == (slow.ntokens, slow.correct)
    fast.loss.backward()
    slow.loss.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.all(a.grad[1, 4:start] == 0) and torch.all(a.grad[1, end:] == 0)
    # the code rows' columns given on their own (as the model projects them in training)
    columns = torch.cat([torch.arange(4), torch.arange(start, end)])
    other = torch.tensor([0, 4, 6])
    o = logits[other].clone().requires_grad_(True)
    c = logits[code][:, columns].clone().requires_grad_(True)
    split = label_smoothed_cross_entropy(o, target, epsilon, weights=weights, allowed=answer_mask,
                                         allowed_rows=answer, code_rows=code,
                                         code_range=(start, end), code_logits=c,
                                         drop_worst_ratio=drop)
    torch.testing.assert_close(split.loss, slow.loss)
    torch.testing.assert_close(split.nll, slow.nll)
    assert (split.ntokens, split.correct) == (slow.ntokens, slow.correct)
    split.loss.backward()
    torch.testing.assert_close(o.grad, b.grad[other])
    torch.testing.assert_close(c.grad, b.grad[code][:, columns])
    with pytest.raises(ValueError, match="code_range"):
        label_smoothed_cross_entropy(logits, target, 0.1, code_rows=code)
    with pytest.raises(ValueError, match="code_logits"):
        label_smoothed_cross_entropy(logits, target, 0.1, code_rows=code,
                                     code_range=(start, end), code_logits=c)


def test_allowed_rows_needs_matching_mask():
    with pytest.raises(ValueError, match="allowed_rows"):
        label_smoothed_cross_entropy(torch.randn(3, 8), torch.tensor([1, 2, 3]), 0.1,
                                     allowed=torch.ones(3, 8, dtype=torch.bool),
                                     allowed_rows=torch.tensor([0]))


def test_correct_counts_a_tied_maximum_on_both_paths():
    logits = torch.tensor([[2.0, 2.0, 0.0, -1.0], [1.0, 3.0, 3.0, 0.0], [0.0, 1.0, 0.5, 0.2]])
    target = torch.tensor([1, 0, 1])  # tied with the first maximum, below it, the maximum
    fused = label_smoothed_cross_entropy(logits, target, 0.1)
    masked = label_smoothed_cross_entropy(logits, target, 0.1, constraint_range=(0, 4))
    assert fused.correct == masked.correct == 2
    torch.testing.assert_close(fused.loss, masked.loss)
