"""The OFA decoder: BOS-started, pre-LN + NormFormer, with a KV cache for generation.

Like the encoder it adds positions to the token embeddings only with
``entangle_position_embedding`` (off in every released checkpoint). The causal self-attention
gets an absolute + per-layer relative bias, cross-attention only an absolute bias against the
encoder's position embeddings. Image-code samples (text-to-image) use the image position
table, the code LayerNorm and 2-D relative buckets instead of the text ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .attention import MultiheadAttention, causal_padding_bias, fold_rows, key_padding_bias
from .config import OFAConfig
from .encoder import EncoderOutput
from .layers import FeedForwardLayer, drop_path_rates, norm
from .packed import derived, eager_inference, joined_linear, linear
from .positions import (
    decoder_image_position_ids,
    image_rel_buckets,
    relative_bias_tables,
    token_rel_buckets,
)


@dataclass
class LayerCache:
    self_k: torch.Tensor | None = None  # [B, H, T_past, d_h]
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None  # [B, H, S, d_h], computed once per source
    cross_v: torch.Tensor | None = None
    # positions to reserve: new keys/values are then written into buffers of that length
    # (self_k/self_v are views of them) instead of concatenated, which would copy the whole
    # cache at every step (1024 steps for an image)
    capacity: int = 0
    _buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values so far with ``k``/``v`` [B, H, T_new, d_h] added."""
        past = 0 if self.self_k is None else self.self_k.shape[2]
        total = past + k.shape[2]
        if total > self.capacity:
            if self.self_k is not None:
                k, v = torch.cat([self.self_k, k], dim=2), torch.cat([self.self_v, v], dim=2)
            self.self_k, self.self_v, self._buffers = k, v, None
            return k, v
        buffers = self._buffers
        if buffers is None or buffers[0].shape[0] != k.shape[0]:
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            # bf16 on CPU: the cache is kept (and attended over) in fp32, whose attention
            # kernels run twice as fast there on strided views (benchmarks/imagine_speed.py)
            dtype = (torch.float32 if k.device.type == "cpu" and k.dtype == torch.bfloat16
                     else k.dtype)
            buffers = (k.new_empty(shape, dtype=dtype), v.new_empty(shape, dtype=dtype))
            if past:
                buffers[0][:, :, :past] = self.self_k
                buffers[1][:, :, :past] = self.self_v
            self._buffers = buffers
        # narrow: one view each (a [:, :, a:b] index makes three), at every step of every layer
        buffers[0].narrow(2, past, k.shape[2]).copy_(k)
        buffers[1].narrow(2, past, v.shape[2]).copy_(v)
        self.self_k, self.self_v = buffers[0].narrow(2, 0, total), buffers[1].narrow(2, 0, total)
        return self.self_k, self.self_v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/duplicate batch rows of the keys and values (row i becomes row ``index[i]``)."""
        if self.self_k is None:
            return
        if self._buffers is None:  # concatenated, past the reserved length
            self.self_k, self.self_v = (self.self_k.index_select(0, index),
                                        self.self_v.index_select(0, index))
            return
        # the chosen rows go straight into new buffers of the reserved length (beam search
        # reorders at every step: selecting, then copying into room for the next step, would
        # copy the cache twice)
        past = self.self_k.shape[2]
        buffers = tuple(b.new_empty((index.shape[0], *b.shape[1:])) for b in self._buffers)
        for old, new in zip((self.self_k, self.self_v), buffers, strict=True):
            torch.index_select(old, 0, index, out=new.narrow(2, 0, past))
        self._buffers = buffers
        self.self_k, self.self_v = buffers[0].narrow(2, 0, past), buffers[1].narrow(2, 0, past)


@dataclass
class DecoderCache:
    """Incremental-decoding state. Pass an empty one on the first step; ``reorder`` follows
    beam search's choice of parent hypotheses."""

    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0  # decoder positions already processed
    capacity: int = 0  # decoder positions to reserve room for (LayerCache.capacity)
    padding: torch.Tensor | None = None  # [B, T_past] key padding of past decoder tokens
    cross_pos_k: torch.Tensor | None = None  # [H, S, d_h] projected encoder positions
    # projected self-attention key positions [H, T_past, d_h], per mode (False text, True code):
    # they depend on the position only, so each is computed once, not at every step
    self_pos_k: dict[bool, torch.Tensor] = field(default_factory=dict)

    def reorder(self, index: torch.Tensor, sources: torch.Tensor | None = None) -> None:
        """Keep/duplicate batch rows: row i of the new cache is row ``index[i]`` of the old.

        The cross-attention keys/values have one row per source (encoder row), shared by all
        of that source's decoder rows (the beams of a sentence); ``sources`` selects which
        sources stay when some sentences finish (None: all stay).
        """
        for c in self.layers:
            c.reorder(index)
            if sources is not None and c.cross_k is not None:
                c.cross_k = c.cross_k.index_select(0, sources)
                c.cross_v = c.cross_v.index_select(0, sources)
        if self.padding is not None:
            self.padding = self.padding.index_select(0, index)


class DecoderLayer(FeedForwardLayer):
    def __init__(self, cfg: OFAConfig, drop_path: float) -> None:
        super().__init__(cfg.d_model, cfg.ffn_dim, cfg.layer_norm_eps, cfg.dropout,
                         cfg.activation_dropout, drop_path)
        d, eps = cfg.d_model, cfg.layer_norm_eps
        self.self_attn = MultiheadAttention(d, cfg.attention_heads, cfg.head_dim,
                                            cfg.attn_scale_factor, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.self_attn_ln = nn.LayerNorm(d, eps=eps)
        self.encoder_attn = MultiheadAttention(d, cfg.attention_heads, cfg.head_dim,
                                               cfg.attn_scale_factor, cfg.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.cross_attn_ln = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, self_bias: torch.Tensor,
                cross_bias: torch.Tensor, cache: LayerCache | None,
                cross_bias_folded: bool = False) -> torch.Tensor:
        """``cross_bias_folded``: the cross bias is laid out for the cached keys' rows
        (:func:`ofa.model.attention.fold_rows`)."""
        h = norm(self.self_attn_layer_norm, x)
        q, k, v = self.self_attn.project_qkv(h)
        if cache is not None:
            k, v = cache.append(k, v)
        x = self.residual(x, norm(self.self_attn_ln, self.self_attn.attend(q, k, v, self_bias,
                                                                           h.dtype)))

        if cache is not None and cache.cross_k is not None:
            ck, cv = cache.cross_k, cache.cross_v
        else:
            ck, cv = self.encoder_attn.project_kv(enc)
            if cache is not None:
                # kept contiguous: every later step reads them, and SDPA's CPU kernel reads
                # the heads-transposed view of a bf16 projection about 1.8x slower (the same
                # values either way)
                ck, cv = ck.contiguous(), cv.contiguous()
                cache.cross_k, cache.cross_v = ck, cv
        h = norm(self.encoder_attn_layer_norm, x)
        x = self.residual(x, norm(self.cross_attn_ln, self.encoder_attn(h, ck, cv, cross_bias,
                                                                        cross_bias_folded)))
        return self.feed_forward(x)


def cross_attention_bias(bias: torch.Tensor, encoder_padding_mask: torch.Tensor, rows: int,
                         dtype: torch.dtype) -> torch.Tensor:
    """Cross-attention bias [rows, H, Tq, S]: the position bias [H, Tq, S] plus the encoder's
    key padding in ``dtype`` (the activations'), each encoder row repeated for its decoder
    rows (beam search keeps one encoder row per sentence)."""
    pad = encoder_padding_mask.repeat_interleave(rows // encoder_padding_mask.shape[0], dim=0)
    return bias + key_padding_bias(pad, dtype)


class OFADecoder(nn.Module):
    def __init__(self, cfg: OFAConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.cfg = cfg
        d, eps, heads = cfg.d_model, cfg.layer_norm_eps, cfg.attention_heads
        self.embed_tokens = embed_tokens
        self.layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.code_layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.embed_positions = nn.Embedding(cfg.max_target_positions + 2, d)
        self.embed_image_positions = nn.Embedding(cfg.num_image_positions, d)
        self.pos_ln = nn.LayerNorm(d, eps=eps)
        self.image_pos_ln = nn.LayerNorm(d, eps=eps)
        self.self_pos_q_linear = nn.Linear(d, d)
        self.self_pos_k_linear = nn.Linear(d, d)
        self.cross_pos_q_linear = nn.Linear(d, d)
        self.cross_pos_k_linear = nn.Linear(d, d)
        self.pos_scaling = (d / heads * cfg.attn_scale_factor) ** -0.5
        self.token_rel_pos_table_list, self.image_rel_pos_table_list = relative_bias_tables(
            cfg.decoder_layers, cfg.token_bucket_size, cfg.num_image_rel_buckets, heads)
        rates = drop_path_rates(cfg.decoder_drop_path_rate, cfg.decoder_layers)
        self.layers = nn.ModuleList(DecoderLayer(cfg, r) for r in rates)
        self.layer_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.register_buffer("image_position_idx", self.build_image_position_idx(),
                             persistent=False)

    def build_image_position_idx(self) -> torch.Tensor:
        cfg = self.cfg
        return decoder_image_position_ids(cfg.code_image_size, cfg.image_bucket_size,
                                          cfg.max_target_positions)

    def max_positions(self, code: bool = False) -> int:
        """The longest decoder input (BOS included): the text position table, or for
        image-code samples the code position ids (BOS, the grid, then filler: OFA's generator
        decodes the full 1024-code grid and its EOS past max_target_positions)."""
        return self.image_position_idx.numel() if code else self.cfg.max_target_positions

    def text_positions(self, rows: torch.Tensor) -> torch.Tensor:
        """LayerNormed absolute text positions [T, D] of decoder positions ``rows``."""
        return self.pos_ln(self.embed_positions.weight[rows])

    def _biases(self, rows: torch.Tensor, cols: torch.Tensor, code: bool,
                cross_k: torch.Tensor, cache: DecoderCache | None
                ) -> tuple[list[torch.Tensor] | torch.Tensor, torch.Tensor]:
        """Per-layer self-attention biases [H, Tq, Tk] (a list, or in inference one [L, H, Tq,
        Tk] tensor) and the cross bias [H, Tq, S] for query positions ``rows`` (the new ones)
        against key positions ``cols`` (all so far)."""
        cfg, heads = self.cfg, self.cfg.attention_heads
        if code:  # image codes: image position table, its LayerNorm, 2-D buckets
            ids_q, ids_k = self.image_position_idx[rows], self.image_position_idx[cols]
            buckets = image_rel_buckets(ids_q, ids_k, cfg.image_bucket_size)
            tables = self.image_rel_pos_table_list
        else:
            ids_q = rows
            buckets = token_rel_buckets(rows, cols, cfg.token_bucket_size,
                                        cfg.max_target_positions)
            tables = self.token_rel_pos_table_list
        # the new query positions are also the newest key positions (rows = cols[-Tq:])
        self_q, k, cross_q = self._position_projections(ids_q, code)
        q_heads = rows.shape[0], heads, -1
        k = k.view(*q_heads).transpose(0, 1)
        if cache is not None:
            if code in cache.self_pos_k:
                k = torch.cat([cache.self_pos_k[code], k], dim=1)
            cache.self_pos_k[code] = k
        self_abs = (self_q.view(*q_heads).transpose(0, 1) * self.pos_scaling) @ k.transpose(1, 2)
        cross_q = cross_q.view(*q_heads).transpose(0, 1) * self.pos_scaling
        cross = cross_q @ cross_k.transpose(1, 2)
        if eager_inference(rows):  # every layer's table in one gather: [L, H, Tq, Tk]
            weights = [t.weight for t in tables]
            joined = derived(self, f"relative_tables_{code}", weights,
                             lambda: torch.cat([w.detach() for w in weights], 1))
            rel = F.embedding(buckets, joined).view(*buckets.shape, len(tables), heads)
            return self_abs + rel.permute(2, 3, 0, 1), cross
        return [self_abs + t(buckets).permute(2, 0, 1) for t in tables], cross

    def _position_projections(self, ids: torch.Tensor, code: bool
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The self-attention query and key and the cross-attention query projections [T, D]
        of the LayerNormed absolute positions ``ids`` [T] (rows of the image position table
        with ``code``, else of the text one).

        In inference the three weights are joined and packed (``joined_linear``: PyTorch's
        unpacked product read the joined weight at about 16 GB/s for one row), and every
        row of the table is projected at once and kept until a weight changes: a decoding
        step then gathers its row instead of streaming the joined weight (3.5 MB in bf16,
        about 0.1 ms). oneDNN gives each row the same sums whatever the row count (a
        position's projections were bit-identical from 1 and from 1026 rows, fp32 and
        bf16)."""
        layers = [self.self_pos_q_linear, self.self_pos_k_linear, self.cross_pos_q_linear]
        table_norm, table = ((self.image_pos_ln, self.embed_image_positions.weight) if code
                             else (self.pos_ln, self.embed_positions.weight))
        if eager_inference(ids):
            tensors = [table, table_norm.weight, table_norm.bias,
                       *(t for m in layers for t in m.parameters())]
            every = derived(self, f"position_projections_{code}", tensors,
                            lambda: joined_linear(self, "position_projections", layers,
                                                  table_norm(table.detach())))
            if every is not None:
                return every[ids].split(self.cfg.d_model, dim=-1)
        q = table_norm(table[ids])
        joined = joined_linear(self, "position_projections", layers, q)
        if joined is None:
            return tuple(linear(m, q) for m in layers)
        return joined.split(self.cfg.d_model, dim=-1)

    def embed(self, tokens: torch.Tensor, rows: torch.Tensor,
              code_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings [B, T, D] of ``tokens`` at decoder positions ``rows`` [T]; samples marked
        in ``code_mask`` [B] are image codes (their own LayerNorm and position table)."""
        x = self.embed_tokens(tokens)
        code = code_mask.view(-1, 1, 1) if code_mask is not None else None
        if self.cfg.entangle_position_embedding:
            pos = self.embed_positions.weight[rows]
            if code is not None:
                code_pos = self.embed_image_positions.weight[self.image_position_idx[rows]]
                pos = torch.where(code, code_pos, pos)
            x = x + pos
        if code is not None:
            x = torch.where(code, self.code_layernorm_embedding(x), self.layernorm_embedding(x))
        else:
            x = self.layernorm_embedding(x)
        return self.dropout(x)

    def forward(self, tokens: torch.Tensor, encoder_out: EncoderOutput,
                cache: DecoderCache | None = None,
                code_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, T] (BOS-started; with a cache only the new positions); returns the
        hidden states [B, T, D] after the final LayerNorm. code_mask [B] bool marks samples
        whose target is image codes."""
        cfg = self.cfg
        b, t = tokens.shape
        past = cache.length if cache is not None else 0
        total = past + t
        any_code = code_mask is not None and bool(code_mask.any())
        all_code = any_code and bool(code_mask.all())
        if total > self.max_positions(all_code):
            raise InputError(f"decoder length {total} exceeds {self.max_positions(all_code)}")
        device = tokens.device
        rows = torch.arange(past, total, device=device)
        cols = torch.arange(total, device=device)

        x = self.embed(tokens, rows, code_mask if any_code else None)

        if cache is not None and cache.cross_pos_k is not None:
            cross_k = cache.cross_pos_k
        else:
            pos = encoder_out.position_embeddings
            cross_k = linear(self.cross_pos_k_linear, pos)
            cross_k = cross_k.view(pos.shape[0], cfg.attention_heads, -1).transpose(0, 1)
            if cache is not None:
                # kept contiguous: every later step multiplies by it, and PyTorch's bf16 CPU
                # bmm first copies the heads-transposed view (0.31 against 0.03 ms a step for
                # OFA-base's 908 positions; the same values, fp32 too)
                cross_k = cross_k.contiguous()
                cache.cross_pos_k = cross_k
        self_biases, cross_bias = self._biases(rows, cols, all_code, cross_k, cache)
        if any_code and not all_code:  # mixed batch: per-sample choice of text/code positions
            code_self, code_cross = self._biases(rows, cols, True, cross_k, cache)
            sel = code_mask.view(b, 1, 1, 1)
            self_biases = [torch.where(sel, c, s) for s, c in zip(self_biases, code_self,
                                                                   strict=True)]
            cross_bias = torch.where(sel, code_cross, cross_bias)

        pad = tokens.eq(cfg.pad_token_id)
        if cache is not None:
            if cache.padding is not None:
                pad = torch.cat([cache.padding, pad], dim=1)
            cache.padding = pad
        mask = causal_padding_bias(rows, cols, pad, x.dtype)
        cross_bias = cross_attention_bias(cross_bias, encoder_out.padding_mask, b, x.dtype)
        # the cached cross keys have one row per source: fold the bias for them once here,
        # not in each layer (two copies a layer at every step)
        shared = b // encoder_out.padding_mask.shape[0]
        folded = (cache is not None and bool(cache.layers) and cache.layers[0].cross_k is not None
                  and shared > 1 and cache.layers[0].cross_k.shape[0] * shared == b)
        if folded:
            cross_bias = fold_rows(cross_bias, b, cfg.attention_heads, t, shared)

        if cache is not None and not cache.layers:
            cache.layers = [LayerCache(capacity=cache.capacity) for _ in self.layers]
        for i, layer in enumerate(self.layers):
            x = layer(x, encoder_out.hidden, self_biases[i] + mask, cross_bias,
                      cache.layers[i] if cache is not None else None, folded)
        if cache is not None:
            cache.length = total
        return self.layer_norm(x)
