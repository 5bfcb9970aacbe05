"""The training attention equals PyTorch's scaled_dot_product_attention bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from ofa.model.attention import MultiheadAttention, attention_for_training


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_training_attention_equals_sdpa(dtype, dropout):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8).to(dtype).requires_grad_() for _ in range(3))
    bias = torch.randn(1, 4, 9, 9).to(dtype)
    bias[..., 6:] = float("-inf")  # key padding
    bias.requires_grad_()
    grad = torch.randn(2, 4, 9, 8).to(dtype)
    torch.manual_seed(1)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3, dropout_p=dropout)
    want_grads = torch.autograd.grad(want, (q, k, v, bias), grad)
    torch.manual_seed(1)
    got = attention_for_training(q, k, v, bias, 0.3, dropout)
    got_grads = torch.autograd.grad(got, (q, k, v, bias), grad)
    assert got.dtype == dtype and torch.equal(got, want)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))


def test_module_uses_it_only_when_autograd_records(monkeypatch):
    calls = []
    import ofa.model.attention as attention

    def spy(*args, **kwargs):
        calls.append(1)
        return attention_for_training(*args, **kwargs)

    monkeypatch.setattr(attention, "attention_for_training", spy)
    mha = MultiheadAttention(16, 2, 8)
    x = torch.randn(2, 5, 16)
    k, v = mha.project_kv(x)
    with torch.no_grad():
        inference = mha(x, *mha.project_kv(x), None)
    assert not calls
    training = mha(x, k, v, None)
    assert calls and torch.allclose(training, inference, atol=1e-6)
