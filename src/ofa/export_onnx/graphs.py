"""Adapter modules the exporter traces: the model's own submodules and bias functions, without
the data-dependent branches torch.export cannot trace (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..model.attention import causal_padding_bias, key_padding_bias
from ..model.decoder import LayerCache, cross_attention_bias
from ..model.encoder import position_bias
from ..model.positions import image_rel_buckets, token_rel_buckets

if TYPE_CHECKING:
    from ..model.ofa import OFAModel


class EncoderGraph(nn.Module):
    """``OFAEncoder.forward`` with images always present and no data-dependent branches, plus
    what every decoding step needs from the source: projected cross positions and each
    decoder layer's cross-attention keys/values."""

    def __init__(self, model: OFAModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.decoder = model.decoder

    def forward(self, input_ids: torch.Tensor, images: torch.Tensor,
                image_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc, dec = self.encoder, self.decoder
        cfg, heads = enc.cfg, enc.cfg.attention_heads
        b, n_text = input_ids.shape
        text_pos = torch.arange(n_text, device=input_ids.device)
        x = enc.embed_text(input_ids, text_pos)
        img_x, img_ids, img_pos = enc.embed_image(images.to(x.dtype))
        img_pad = image_mask.to(torch.bool).logical_not()[:, None].expand(b, img_x.shape[1])
        x = torch.cat([img_x, x], dim=1)
        padding = torch.cat([img_pad, input_ids.eq(cfg.pad_token_id)], dim=1)
        pos = enc.positions(text_pos, img_pos)
        abs_bias = position_bias(enc.pos_q_linear, enc.pos_k_linear, pos, pos, heads,
                                 enc.pos_scaling)
        # the model skips these two when nothing is padded: x * 1 and + 0 change no value
        x = x * padding.logical_not().unsqueeze(-1).to(x.dtype)
        key_pad = key_padding_bias(padding, abs_bias.dtype)
        text_buckets = token_rel_buckets(text_pos, text_pos, cfg.token_bucket_size,
                                         cfg.max_source_positions)
        img_buckets = image_rel_buckets(img_ids, img_ids, cfg.image_bucket_size)
        for i, layer in enumerate(enc.layers):
            x = layer(x, enc.layer_bias(i, abs_bias, text_buckets, img_buckets) + key_pad)
        hidden = enc.layer_norm(x)
        cross_pos_k = dec.cross_pos_k_linear(pos).view(pos.shape[0], heads, -1).transpose(0, 1)
        kv: list[torch.Tensor] = []
        for layer in dec.layers:
            kv.extend(layer.encoder_attn.project_kv(hidden))
        return (hidden, padding, cross_pos_k, *kv)


class DecoderStepGraph(nn.Module):
    """``OFADecoder.forward`` for one new text token with the self-attention cache given as
    tensors (the past length P is their third axis) and the cross K/V precomputed.

    The position terms depend on the position only, so they are tabulated here for every
    decoder position once (the model projects each new position at its step and caches the
    keys): a step reads its query row and the keys so far instead of projecting them."""

    def __init__(self, model: OFAModel) -> None:
        super().__init__()
        dec = model.decoder
        self.decoder = dec
        self.embed_weight = model.embed_tokens.weight
        m, heads = dec.cfg.max_target_positions, dec.cfg.attention_heads
        with torch.no_grad():
            pos = dec.text_positions(torch.arange(m))
            self.register_buffer("self_pos_k", dec.self_pos_k_linear(pos).view(m, heads, -1)
                                 .transpose(0, 1).contiguous(), persistent=False)
            self.register_buffer("self_pos_q", dec.self_pos_q_linear(pos).view(m, heads, -1)
                                 * dec.pos_scaling, persistent=False)
            self.register_buffer("cross_pos_q", dec.cross_pos_q_linear(pos).view(m, heads, -1)
                                 * dec.pos_scaling, persistent=False)

    def forward(self, input_ids: torch.Tensor, encoder_padding_mask: torch.Tensor,
                cross_pos_k: torch.Tensor, cross_kv: list[torch.Tensor],
                past_kv: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        dec = self.decoder
        cfg = dec.cfg
        n = input_ids.shape[0]
        past = past_kv[0].shape[2]
        total = past + 1
        device = input_ids.device
        rows = torch.arange(past, total, device=device)
        cols = torch.arange(total, device=device)

        x = dec.embed(input_ids, rows)
        self_q = self.self_pos_q[past:total].transpose(0, 1)  # [H, 1, d]
        self_abs = self_q @ self.self_pos_k[:, :total].transpose(1, 2)  # [H, 1, T]
        cross_q = self.cross_pos_q[past:total].transpose(0, 1)
        cross_bias = cross_q @ cross_pos_k.transpose(1, 2)  # [H, 1, S]
        buckets = token_rel_buckets(rows, cols, cfg.token_bucket_size, cfg.max_target_positions)

        # key padding: the past tokens are never PAD; the new one masks itself if it is
        key_pad = torch.cat([torch.zeros(n, past, dtype=torch.bool, device=device),
                             input_ids.eq(cfg.pad_token_id)], dim=1)
        mask = causal_padding_bias(rows, cols, key_pad, x.dtype)
        cross_bias = cross_attention_bias(cross_bias, encoder_padding_mask.to(torch.bool), n,
                                          x.dtype)

        present: list[torch.Tensor] = []
        for i, layer in enumerate(dec.layers):
            cache = LayerCache(self_k=past_kv[2 * i], self_v=past_kv[2 * i + 1],
                               cross_k=cross_kv[2 * i], cross_v=cross_kv[2 * i + 1])
            self_bias = self_abs + dec.token_rel_pos_table_list[i](buckets).permute(2, 0, 1)
            x = layer(x, None, self_bias + mask, cross_bias, cache)
            present.extend((cache.self_k, cache.self_v))
        logits = F.linear(dec.layer_norm(x), self.embed_weight)
        return (logits, *present)
