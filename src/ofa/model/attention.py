"""Multi-head attention of OFA: scale 1/sqrt(2*d_h), additive position bias, per-head scale."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware import cpu_flags
from .packed import eager_inference, joined_linear, linear, onednn_products

# bytes of bf16 attention logits one block of heads may hold (cpu_bf16_attention): a block's
# logits stay in the cache between the two products and the softmax
_BLOCK_BYTES = 2 << 20
# queries x keys per head above which fp32 CPU inference takes cpu_fp32_attention (where
# fp32_products_pay): its two products per head cost about 35 us more than SDPA's kernel,
# which it overtakes past 256 x 256 (on a Zen 5 EPYC: 128 x 908 0.87x SDPA's time, 908 x 908
# 0.65x; 20 x 20 12x)
_FP32_PRODUCTS_FROM = 1 << 16
# rows x heads x keys above which one fp32 query per row and head takes
# cpu_one_query_attention: where the keys and values come from memory (text-to-image's 24 rows
# from about 110 cached positions); with fewer (a caption's 5 beams) SDPA is as fast
_ONE_QUERY_FROM = 1 << 15


def attention_for_training(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           bias: torch.Tensor | None, scale: float, dropout: float = 0.0
                           ) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` as PyTorch computes it when autograd records (its
    math kernel on CPU: fp32 inside, q and k each scaled by sqrt(scale)), with the same values
    and gradients bit for bit, less its check for fully masked rows: OFA's masks never mask a
    whole row, and the check was a measurable part of a small model's training update on CPU
    (BENCHMARKS.md)."""
    dtype = q.dtype
    with torch.autocast(q.device.type, enabled=False):
        if dtype in (torch.bfloat16, torch.float16):
            q, k, v = q.float(), k.float(), v.float()
        root = math.sqrt(scale)
        attn = torch.matmul(q * root, k.transpose(-2, -1) * root)
        if bias is not None:
            attn = attn + bias
        attn = torch.softmax(attn, dim=-1)
        if dropout > 0.0:
            attn = F.dropout(attn, dropout, training=True)
        return torch.matmul(attn, v).to(dtype)


def cpu_bf16_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of bf16 tensors on the CPU ([B, H, Tq, d] queries, [B, H, Tk, d] keys and
    values, ``bias`` broadcastable to [B, H, Tq, Tk]) as two oneDNN bf16 products around a
    softmax, over blocks of heads whose logits fit in the cache.

    SDPA's CPU flash kernel runs bf16 at about fp32 speed (OFA-base's 908-token encoder: 14 ms
    a layer, 15% of the bf16 matmul peak, on an AVX512-BF16 EPYC); this takes about half that
    (``benchmarks/inference_kernels.py``). The logits are rounded to bf16 before a softmax
    computed in fp32 and rounded back, as fairseq's half-precision attention does
    (``fairseq/modules/multihead_attention.py``, which OFA-Sys/OFA's
    ``models/ofa/unify_multihead_attention.py`` follows); SDPA keeps them in fp32. Outputs
    differ from fp32 attention by about one bf16 step."""
    b, h, tq, d = q.shape
    if bias is not None and bias.dim() < 4:
        bias = bias.view((1,) * (4 - bias.dim()) + tuple(bias.shape))
    tk = k.shape[2]

    def block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """[n, Tq, d] queries against [n, Tk, d] keys and values."""
        keys = k.transpose(1, 2)
        logits = (torch.bmm(q, keys) * scale if bias is None
                  else torch.baddbmm(bias, q, keys, alpha=scale))
        return torch.bmm(torch.softmax(logits, -1), v, out=out)

    if b * h * tq * tk * 2 <= _BLOCK_BYTES:  # every row and head in one block: no loop
        rows = None if bias is None else bias.expand(b, h, tq, tk).reshape(b * h, tq, tk)
        return block(q.reshape(b * h, tq, d), k.reshape(b * h, tk, d),
                     v.reshape(b * h, tk, d), rows).view(b, h, tq, d)
    out = q.new_empty(b, h, tq, d)
    step = max(1, min(h, _BLOCK_BYTES // (2 * tq * tk)))
    for i in range(b):
        for j in range(0, h, step):
            heads = slice(j, j + step)
            rows = None
            if bias is not None:
                rows = bias[i if bias.shape[0] > 1 else 0]
                rows = rows[heads] if rows.shape[0] > 1 else rows
            block(q[i, heads], k[i, heads], v[i, heads], rows, out=out[i, heads])
    return out


def cpu_fp32_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of fp32 tensors on the CPU (shapes as :func:`cpu_bf16_attention`) as two
    oneDNN products per head (``torch.ops.mkldnn._linear_pointwise``, the keys and the
    transposed values taken as the weights) around an in-place bias add and softmax.

    For long inputs (OFA-base's 908-token encoder: 9.5 against SDPA's 15.7 ms a layer on a Zen
    5 EPYC, ``benchmarks/inference_kernels.py``): SDPA's CPU flash kernel reaches about 30% of
    the fp32 matmul peak there, and PyTorch's fp32 ``bmm`` goes to MKL, whose path on AMD CPUs
    runs at half oneDNN's speed. Outputs differ from SDPA's by float rounding (about 1e-6).
    oneDNN takes strided operands through a path thousands of times slower, hence the copies."""
    b, h, tq, d = q.shape
    if bias is not None and bias.dim() < 4:
        bias = bias.view((1,) * (4 - bias.dim()) + tuple(bias.shape))
    q = (q * scale).contiguous()
    k = k.contiguous()
    v_t = v.transpose(2, 3).contiguous()  # [B, H, d, Tk]: the second product's weight layout
    product = torch.ops.mkldnn._linear_pointwise
    out = q.new_empty(b, h, tq, d)
    for i in range(b):
        for j in range(h):
            logits = product(q[i, j], k[i, j], None, "none", [], "")
            if bias is not None:
                logits += bias[i if bias.shape[0] > 1 else 0, j if bias.shape[1] > 1 else 0]
            torch.softmax(logits, -1, out=logits)
            out[i, j] = product(logits, v_t[i, j], None, "none", [], "")
    return out


def cpu_one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of one fp32 query per row and head ([B, H, 1, d]) over long keys and
    values ([B, H, Tk, d], views into a cache's reserved buffers) as two matrix-vector
    products around a softmax.

    A sampling step of text-to-image attends over up to 1024 cached positions for each of
    its 24 rows: SDPA's CPU flash kernel reads those keys and values at 22-30 GB/s, these
    products at 27-39 GB/s (1.2-1.3x faster; ``benchmarks/inference_kernels.py``). fairseq's
    attention is the same three steps (``fairseq/modules/multihead_attention.py``); outputs
    differ from SDPA's by float rounding (about 1e-6)."""
    logits = torch.matmul(k, (q * scale).transpose(-1, -2)).transpose(-1, -2)
    if bias is not None:
        logits = logits + bias
    return torch.matmul(torch.softmax(logits, -1), v)


def fp32_products_pay() -> bool:
    """Whether :func:`cpu_fp32_attention` beats SDPA here: oneDNN's products are on, and may
    use AVX512 (held to AVX2 with ``ONEDNN_MAX_CPU_ISA=AVX2`` on the same Zen 5 EPYC, the
    908-token encoder's attention took 22.0 against SDPA's 16.1 ms a layer)."""
    return onednn_products(torch.float32) and cpu_flags()["avx512f"]


def key_padding_bias(padding: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, 1, S] additive term: -inf at padded keys (``padding`` [B, S] True), 0 elsewhere."""
    bias = torch.zeros(padding.shape, dtype=dtype, device=padding.device)
    return bias.masked_fill(padding, float("-inf"))[:, None, None, :]


def causal_padding_bias(rows: torch.Tensor, cols: torch.Tensor, padding: torch.Tensor,
                        dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, Tq, Tk] additive term of decoder self-attention: -inf where a key comes after
    its query (query positions ``rows``, key positions ``cols``) or is padding [B, Tk]."""
    causal = torch.zeros(rows.shape[0], cols.shape[0], dtype=dtype, device=rows.device)
    causal = causal.masked_fill(cols[None, :] > rows[:, None], float("-inf"))
    return causal + key_padding_bias(padding, dtype)


def fold_rows(bias: torch.Tensor, rows: int, heads: int, queries: int, r: int
              ) -> torch.Tensor:
    """``bias`` (broadcastable to [rows, heads, queries, Tk]) laid out as [rows / r, heads,
    r * queries, Tk]: r consecutive rows that share their keys and values become r * queries
    queries of one row, as :meth:`MultiheadAttention.attend` folds their queries."""
    tk = bias.shape[-1]
    bias = bias.expand(rows, heads, queries, tk).reshape(-1, r, heads, queries, tk)
    return bias.transpose(1, 2).reshape(-1, heads, r * queries, tk)


class MultiheadAttention(nn.Module):
    """q/k/v/out projections with a learned per-head output scale ``c_attn`` (NormFormer).

    ``bias`` (float, broadcastable to [B, H, Tq, Tk]) carries the position biases, the causal
    mask and key padding as -inf; it is added to the scaled logits before the softmax.
    """

    def __init__(self, d_model: int, num_heads: int, head_dim: int, scale_factor: float = 2.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.scaling = (head_dim * scale_factor) ** -0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(d_model, inner)
        self.v_proj = nn.Linear(d_model, inner)
        self.q_proj = nn.Linear(d_model, inner)
        self.out_proj = nn.Linear(inner, d_model)
        self.c_attn = nn.Parameter(torch.ones(num_heads))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, T, d_h] of ``x``; cached once per source for cross-attention."""
        return self.split_heads(linear(self.k_proj, x)), self.split_heads(linear(self.v_proj, x))

    def project_qkv(self, x: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values [B, H, T, d_h] of ``x`` for self-attention: one product
        with the three weights joined where packed weights apply (``joined_linear``), else
        three."""
        projections = [self.q_proj, self.k_proj, self.v_proj]
        joined = joined_linear(self, "qkv", projections, x)
        if joined is None:
            return tuple(self.split_heads(linear(m, x)) for m in projections)
        q, k, v = joined.split(self.num_heads * self.head_dim, dim=-1)
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                bias: torch.Tensor | None, bias_folded: bool = False) -> torch.Tensor:
        """query [B, Tq, D]; key/value already projected and split: [B, H, Tk, d_h], or
        [B / r, H, Tk, d_h] shared by r consecutive query rows (the beams of one sentence
        attending to its encoder states: no per-beam copies of the keys and values).
        ``bias_folded``: the bias is already laid out for such keys (:func:`fold_rows`)."""
        return self.attend(self.split_heads(linear(self.q_proj, query)), key, value, bias,
                           query.dtype, bias_folded)

    def attend(self, q: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               bias: torch.Tensor | None, dtype: torch.dtype, bias_folded: bool = False
               ) -> torch.Tensor:
        """:meth:`forward` from queries already projected and split [B, H, Tq, d_h]; the
        output [B, Tq, D] in ``dtype``."""
        if key.dtype != q.dtype:  # a cache kept in another precision (LayerCache.append)
            q = q.to(key.dtype)
        b, h, tq, d = q.shape
        r = b // key.shape[0]
        if bias is not None:
            bias = bias.to(q.dtype)
        if r > 1:  # r rows of one source become r * Tq queries of that source
            q = q.view(-1, r, h, tq, d).transpose(1, 2).reshape(-1, h, r * tq, d)
            if bias is not None and not bias_folded:
                bias = fold_rows(bias, b, h, tq, r)
        dropout = self.dropout if self.training else 0.0
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in (q, key, value, bias)):
            out = attention_for_training(q, key, value, bias, self.scaling, dropout)
        elif (q.dtype == torch.bfloat16 and q.device.type == "cpu" and dropout == 0.0
              and eager_inference(q, key, value)):
            out = cpu_bf16_attention(q, key, value, bias, self.scaling)
        elif (q.dtype == torch.float32 and tq == 1 and r == 1 and q.is_cpu and dropout == 0.0
              and b * h * key.shape[2] > _ONE_QUERY_FROM and eager_inference(q, key, value)):
            out = cpu_one_query_attention(q, key, value, bias, self.scaling)
        elif (q.dtype == torch.float32 and q.device.type == "cpu" and dropout == 0.0
              and q.shape[2] * key.shape[2] > _FP32_PRODUCTS_FROM and fp32_products_pay()
              and eager_inference(q, key, value)):
            out = cpu_fp32_attention(q, key, value, bias, self.scaling)
        else:
            out = F.scaled_dot_product_attention(q, key, value, attn_mask=bias,
                                                 scale=self.scaling, dropout_p=dropout)
        if r > 1:
            out = out.view(-1, h, r, tq, d).transpose(1, 2).reshape(b, h, tq, d)
        out = out * self.c_attn.view(1, -1, 1, 1).to(out.dtype)
        return linear(self.out_proj, out.transpose(1, 2).reshape(b, tq, h * d).to(dtype))
