"""The training attention equals PyTorch's scaled_dot_product_attention bit for bit; the bf16
CPU inference attention stays within bf16 rounding of fp32 attention."""

import pytest
import torch
import torch.nn.functional as F

from ofa import hardware
from ofa.model.attention import (
    MultiheadAttention,
    attention_for_training,
    cpu_one_query_attention,
    fold_rows,
)


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


@pytest.mark.parametrize("bias_shape", [None, (2, 1, 1, 11), (1, 4, 7, 11), (2, 4, 7, 11),
                                        (4, 7, 11)])
@pytest.mark.parametrize("block_bytes", [1, 1 << 20])  # one head per block, or all heads
def test_cpu_bf16_attention_matches_fp32_attention(monkeypatch, bias_shape, block_bytes):
    import ofa.model.attention as attention

    monkeypatch.setattr(attention, "_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, 16).bfloat16() for n in (7, 11, 11))
    bias = None
    if bias_shape is not None:
        bias = torch.randn(bias_shape).bfloat16()
        bias[..., 9:] = float("-inf")  # key padding
    got = attention.cpu_bf16_attention(q, k, v, bias, 0.25)
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=0.25,
                                          attn_mask=None if bias is None else bias.float())
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    # logits rounded to bf16 before the softmax: about one bf16 step of values up to ~3
    torch.testing.assert_close(got.float(), want, rtol=0.02, atol=0.03)


def test_bf16_inference_takes_the_cpu_path(monkeypatch):
    import ofa.model.attention as attention

    calls = []
    real = attention.cpu_bf16_attention
    monkeypatch.setattr(attention, "cpu_bf16_attention",
                        lambda *a: calls.append(1) or real(*a))
    mha = MultiheadAttention(16, 2, 8).to(torch.bfloat16)
    x = torch.randn(2, 5, 16).bfloat16()
    with torch.no_grad():
        out = mha(x, *mha.project_kv(x), None)
        assert len(calls) == 1
        mha.float()(x.float(), *mha.project_kv(x.float()), None)  # fp32 keeps SDPA
    assert len(calls) == 1 and out.dtype == torch.bfloat16


@pytest.mark.parametrize("bias_shape", [None, (2, 1, 1, 11), (1, 4, 7, 11), (2, 4, 7, 11),
                                        (4, 7, 11)])
def test_cpu_fp32_attention_matches_sdpa(bias_shape):
    import ofa.model.attention as attention

    torch.manual_seed(0)
    # heads-transposed views, as split_heads gives them (oneDNN needs them copied contiguous)
    q, k, v = (torch.randn(2, n, 4, 16).transpose(1, 2) for n in (7, 11, 11))
    bias = None
    if bias_shape is not None:
        bias = torch.randn(bias_shape)
        bias[..., 9:] = float("-inf")  # key padding
    got = attention.cpu_fp32_attention(q, k, v, bias, 0.25)
    want = F.scaled_dot_product_attention(q, k, v, scale=0.25, attn_mask=bias)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fp32_inference_takes_the_onednn_path_for_long_inputs(monkeypatch):
    import ofa.model.attention as attention
    from ofa.model.packed import packed_weights

    calls = []
    real = attention.cpu_fp32_attention
    monkeypatch.setattr(attention, "cpu_fp32_attention",
                        lambda *a: calls.append(a[0].shape[2]) or real(*a))
    monkeypatch.setattr(attention, "_FP32_PRODUCTS_FROM", 30)  # 6 x 6 queries x keys
    flags = dict(hardware.cpu_flags(), avx512f=False)  # an AVX2-only CPU keeps SDPA
    monkeypatch.setattr(attention, "cpu_flags", lambda: flags)
    mha = MultiheadAttention(16, 2, 8)
    long = torch.randn(1, 6, 16)
    with torch.no_grad():
        mha(long, *mha.project_kv(long), None)
    assert calls == []
    flags["avx512f"] = True
    mha = MultiheadAttention(16, 2, 8)
    short, long = torch.randn(1, 5, 16), torch.randn(1, 6, 16)
    with torch.no_grad():
        mha(short, *mha.project_kv(short), None)
        assert calls == []
        out = mha(long, *mha.project_kv(long), None)
        assert calls == [6]
        with packed_weights(False):  # off with the packed weights (the FLOP counter's case)
            plain = mha(long, *mha.project_kv(long), None)
        mha.to(torch.bfloat16)(long.bfloat16(), *mha.project_kv(long.bfloat16()), None)
    assert calls == [6]
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)
    mha.float()(long, *mha.project_kv(long), None)  # autograd records: the training path
    assert calls == [6]


@pytest.mark.parametrize("bias_shape", [(6, 4, 2, 7), (6, 1, 1, 7), (1, 4, 2, 7)])
def test_bias_folded_once_equals_folding_in_attend(bias_shape):
    # 6 rows (3 sources x 2 beams) sharing keys per source: a bias folded once by the caller
    # (the decoder, for its six layers) gives what attend's own folding gives
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, 4).eval()
    query, source = torch.randn(6, 2, 16), torch.randn(3, 7, 16)
    bias = torch.randn(bias_shape)
    with torch.no_grad():
        k, v = mha.project_kv(source)
        folded = fold_rows(bias, 6, 4, 2, 2)
        assert folded.shape == (3, 4, 4, 7)
        # source 1's second beam, its second query: row 3 of the bias, query index 1 + 2
        assert torch.equal(folded[1, :, 3], bias.expand(6, 4, 2, 7)[3, :, 1])
        once = mha(query, k, v, folded, bias_folded=True)
        inside = mha(query, k, v, bias)
        # the same beams with their own copies of the keys: nothing folded
        apart = mha(query, k.repeat_interleave(2, 0), v.repeat_interleave(2, 0), bias)
    assert torch.equal(once, inside)
    torch.testing.assert_close(once, apart, atol=1e-6, rtol=1e-5)


def test_one_query_attention_matches_sdpa_on_cache_views():
    torch.manual_seed(0)
    q = torch.randn(3, 2, 1, 8)
    # keys and values as a cache holds them: views of buffers reserved for more positions
    k, v = torch.randn(3, 2, 40, 8).narrow(2, 0, 29), torch.randn(3, 2, 40, 8).narrow(2, 0, 29)
    bias = torch.randn(3, 2, 1, 29)
    bias[0, :, :, 5] = float("-inf")  # a padded key
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
    got = cpu_one_query_attention(q, k, v, bias, 0.3)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cpu_one_query_attention(q, k, v, None, 0.3),
                               F.scaled_dot_product_attention(q, k, v, scale=0.3),
                               atol=1e-6, rtol=1e-5)


def test_one_query_per_row_over_many_keys_takes_the_matrix_vector_path(monkeypatch):
    import ofa.model.attention as attention

    calls = []
    real = attention.cpu_one_query_attention
    monkeypatch.setattr(attention, "cpu_one_query_attention",
                        lambda *a: calls.append(a[1].shape) or real(*a))
    monkeypatch.setattr(attention, "_ONE_QUERY_FROM", 2 * 2 * 10)  # rows x heads x keys
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 2, 8).eval()
    one, two = torch.randn(2, 1, 16), torch.randn(2, 2, 16)
    few, many = torch.randn(2, 10, 16), torch.randn(2, 11, 16)
    with torch.no_grad():
        mha(one, *mha.project_kv(few), None)  # 40 rows x heads x keys: not above
        mha(two, *mha.project_kv(many), None)  # two queries a row
        mha.bfloat16()(one.bfloat16(), *mha.project_kv(many.bfloat16()), None)  # bf16
        mha.float()
        assert calls == []
        out = mha(one, *mha.project_kv(many), None)
        assert calls == [(2, 2, 11, 8)]
    keys = mha.project_kv(many)
    trained = mha(one, *keys, None)  # autograd records: the training path
    assert calls == [(2, 2, 11, 8)]
    torch.testing.assert_close(out, trained.detach(), atol=1e-6, rtol=1e-5)
