"""The OFA encoder: ResNet patches and text tokens in one pre-LN Transformer stack.

Absolute positions enter every layer as an attention bias (TUPE style), plus a per-layer
relative bias on the text-text and image-image blocks. They touch the embeddings only with
``entangle_position_embedding`` (off in every released checkpoint).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .attention import MultiheadAttention, key_padding_bias
from .backbone import ResNet
from .config import OFAConfig
from .layers import FeedForwardLayer, drop_path_rates
from .packed import TransientCache, eager_inference, linear, same_tensors, tensor_key
from .positions import (
    image_position_ids,
    image_rel_buckets,
    relative_bias_tables,
    token_rel_buckets,
)


def _cache_bytes(value: str) -> int:
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise ValueError(f"OFA_BIAS_CACHE_MB must be a number of megabytes, got {value!r}"
                         ) from None


# The per-layer position biases [H, T, T] depend only on the weights and the input's shape
# (text length, patch grid): every caption of a 480 px image with the task's prompt reuses
# them. Inference keeps those of a shape seen twice in a row while they fit in this many
# bytes (OFA-base, 480 px, fp32: 6 x 39 MB); OFA_BIAS_CACHE_MB=0 turns the cache off.
BIAS_CACHE_BYTES = _cache_bytes(os.environ.get("OFA_BIAS_CACHE_MB", "256"))
_BIAS_CACHE = "_ofa_position_biases"


@dataclass
class EncoderOutput:
    """hidden [B, T, D] (image patches first, then text); padding_mask [B, T] (True = ignore);
    position_embeddings [T, D], LayerNormed absolute positions the decoder's cross bias reads."""

    hidden: torch.Tensor
    padding_mask: torch.Tensor
    position_embeddings: torch.Tensor

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows for a new batch order, e.g. ``repeat_interleave`` of beams or candidates."""
        return EncoderOutput(self.hidden.index_select(0, index),
                             self.padding_mask.index_select(0, index), self.position_embeddings)


class EncoderLayer(FeedForwardLayer):
    def __init__(self, cfg: OFAConfig, drop_path: float) -> None:
        super().__init__(cfg.d_model, cfg.ffn_dim, cfg.layer_norm_eps, cfg.dropout,
                         cfg.activation_dropout, drop_path)
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.attention_heads, cfg.head_dim,
                                            cfg.attn_scale_factor, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn_ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.self_attn_layer_norm(x)
        q, k, v = self.self_attn.project_qkv(h)
        x = self.residual(x, self.attn_ln(self.self_attn.attend(q, k, v, bias, h.dtype)))
        return self.feed_forward(x)


def position_bias(q_linear: nn.Linear, k_linear: nn.Linear, q_pos: torch.Tensor,
                  k_pos: torch.Tensor, num_heads: int, scaling: float) -> torch.Tensor:
    """Decoupled absolute-position attention bias [H, Tq, Tk] from LayerNormed positions."""
    q = q_linear(q_pos).view(q_pos.shape[0], num_heads, -1).transpose(0, 1) * scaling
    k = k_linear(k_pos).view(k_pos.shape[0], num_heads, -1).transpose(0, 1)
    return q @ k.transpose(1, 2)


class OFAEncoder(nn.Module):
    def __init__(self, cfg: OFAConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.cfg = cfg
        d, eps = cfg.d_model, cfg.layer_norm_eps
        self.embed_tokens = embed_tokens
        self.type_embedding = nn.Embedding(cfg.num_type_embeddings, d)
        self.layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.patch_layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.embed_images = ResNet(cfg.resnet_layers, cfg.resnet_width, cfg.resnet_drop_path_rate)
        self.image_proj = nn.Linear(self.embed_images.out_channels, d)
        self.embed_positions = nn.Embedding(cfg.max_source_positions + 2, d)
        self.embed_image_positions = nn.Embedding(cfg.num_image_positions, d)
        self.pos_ln = nn.LayerNorm(d, eps=eps)
        self.image_pos_ln = nn.LayerNorm(d, eps=eps)
        self.pos_q_linear = nn.Linear(d, d)
        self.pos_k_linear = nn.Linear(d, d)
        self.pos_scaling = (d / cfg.attention_heads * cfg.attn_scale_factor) ** -0.5
        self.token_rel_pos_table_list, self.image_rel_pos_table_list = relative_bias_tables(
            cfg.encoder_layers, cfg.token_bucket_size, cfg.num_image_rel_buckets,
            cfg.attention_heads)
        rates = drop_path_rates(cfg.encoder_drop_path_rate, cfg.encoder_layers)
        self.layers = nn.ModuleList(EncoderLayer(cfg, r) for r in rates)
        self.layer_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def embed_image(self, images: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch embeddings [B, P, D], their position ids [P] (row-major r*42+c+1) and their
        absolute position embeddings [P, D]."""
        feat = self.embed_images(images)
        h, w = feat.shape[-2:]
        if max(h, w) > self.cfg.image_bucket_size:
            side = self.cfg.image_bucket_size * 16
            raise InputError(f"image of {images.shape[-2]}x{images.shape[-1]} px gives a "
                             f"{h}x{w} patch grid; OFA's position table covers at most "
                             f"{side}x{side} px")
        ids = image_position_ids(h, w, self.cfg.image_bucket_size, feat.device)
        pos_embed = self.image_position_embeddings(ids, h, w)
        x = linear(self.image_proj, feat.flatten(2).transpose(1, 2)) + self.type_embedding.weight[1]
        if self.cfg.entangle_position_embedding:
            x = x + pos_embed
        return self.dropout(self.patch_layernorm_embedding(x)), ids, pos_embed

    def image_position_embeddings(self, ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The absolute embeddings [P, D] of an h x w patch grid with position ``ids``; with
        ``interpolate_position``, a grid larger than the training one reads the table on the
        training grid, resized bilinearly (the relative buckets keep the real ids)."""
        side = self.cfg.orig_patch_image_size // 16
        if not self.cfg.interpolate_position or h * w <= side * side:
            return self.embed_image_positions(ids)
        orig = image_position_ids(side, side, self.cfg.image_bucket_size, ids.device)
        table = self.embed_image_positions(orig).reshape(1, side, side, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(h * w, -1)

    def embed_text(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, L, D] of right-padded ``input_ids`` at ``positions`` [L]."""
        x = self.embed_tokens(input_ids) + self.type_embedding.weight[0]
        if self.cfg.entangle_position_embedding:
            x = x + self.embed_positions(positions)
        return self.dropout(self.layernorm_embedding(x))

    def positions(self, text_pos: torch.Tensor, img_pos: torch.Tensor | None) -> torch.Tensor:
        """LayerNormed absolute positions [T, D] of the source: image patches (``img_pos``,
        their embeddings from :meth:`embed_image`), then text."""
        pos = self.pos_ln(self.embed_positions(text_pos))
        if img_pos is None:
            return pos
        return torch.cat([self.image_pos_ln(img_pos), pos])

    def relative_index(self, text_buckets: torch.Tensor, img_buckets: torch.Tensor
                       ) -> torch.Tensor:
        """[T, T] rows of a layer's joined relative table (image buckets, then text buckets,
        then one zero row): image-image and text-text pairs read their buckets, image<->text
        pairs the zero row (they keep only the absolute bias). Shape-only arithmetic: the
        ONNX graph traces it."""
        n_img, n_text = img_buckets.shape[0], text_buckets.shape[0]
        img_rows = self.image_rel_pos_table_list[0].num_embeddings
        zero = img_rows + self.token_rel_pos_table_list[0].num_embeddings
        img_side = torch.full((n_img, n_text), zero, dtype=img_buckets.dtype,
                              device=img_buckets.device)
        text_side = torch.full((n_text, n_img), zero, dtype=img_buckets.dtype,
                               device=img_buckets.device)
        return torch.cat([torch.cat([img_buckets, img_side], 1),
                          torch.cat([text_side, text_buckets + img_rows], 1)], 0)

    def layer_bias(self, i: int, abs_bias: torch.Tensor, text_buckets: torch.Tensor,
                   img_buckets: torch.Tensor | None, index: torch.Tensor | None = None,
                   out: torch.Tensor | None = None) -> torch.Tensor:
        """Layer ``i``'s position bias [1, H, T, T]: the absolute bias everywhere plus the
        relative one on the image-image and text-text blocks (image<->text keep only the
        absolute bias), gathered from the layer's two tables in one pass (``index``:
        :meth:`relative_index`, computed here when not given). ``out`` [H, T, T] (inference):
        written in place, one buffer for every layer, since a fresh 39 MB tensor per layer
        (OFA-base, 480 px) costs more in page faults than the gather. No data-dependent
        branch, so the ONNX graph traces this very function."""
        text_table = self.token_rel_pos_table_list[i].weight
        if img_buckets is None:
            rel = F.embedding(text_buckets, text_table).permute(2, 0, 1)
        else:
            if index is None:
                index = self.relative_index(text_buckets, img_buckets)
            img_table = self.image_rel_pos_table_list[i].weight
            zero = text_table.new_zeros(1, text_table.shape[1])
            table = torch.cat([img_table, text_table, zero])  # [rows, H]
            if out is not None and out.dtype == table.dtype == abs_bias.dtype:
                if table.dtype == torch.float32:  # a head-major gather is fastest in fp32
                    rel = torch.index_select(table.t().contiguous(), 1, index.reshape(-1),
                                             out=out.view(table.shape[1], -1))
                    return rel.view(out.shape).add_(abs_bias).unsqueeze(0)  # the same sum
                # bf16 / fp16: gather whole rows (index_select over dim 1 is 2x slower there)
                rel = F.embedding(index, table).permute(2, 0, 1)
                return torch.add(abs_bias, rel, out=out).unsqueeze(0)
            rel = table.t().contiguous().index_select(1, index.reshape(-1)).view(
                -1, *index.shape)
        # summed in the wider dtype, kept in the bias's own (an in-place add under autocast)
        return (abs_bias + rel).to(abs_bias.dtype).unsqueeze(0)

    def forward(self, input_ids: torch.Tensor, images: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None, sample_patches: int | None = None
                ) -> EncoderOutput:
        """input_ids [B, L] right-padded text (BOS ... EOS); images [B, 3, H, W] or None;
        image_mask [B] bool, False for samples that have no image (their patches are ignored).
        ``sample_patches`` (pretraining): keep only that many patches, drawn at random (torch's
        generator), each with its own position. The official encoder draws a subset per
        sample; one subset for the whole batch keeps the position bias [1, H, T, T]."""
        cfg = self.cfg
        n_text = input_ids.shape[1]
        if n_text > cfg.max_source_positions:
            raise InputError(f"text of {n_text} tokens exceeds the {cfg.max_source_positions}"
                             " positions of the encoder")
        text_pos = torch.arange(n_text, device=input_ids.device)
        x = self.embed_text(input_ids, text_pos)
        padding = input_ids.eq(cfg.pad_token_id)
        img_ids = img_pos = img_buckets = None
        if images is not None:
            img_x, img_ids, img_pos = self.embed_image(images.to(x.dtype))
            if sample_patches is not None and sample_patches < img_ids.numel():
                keep = torch.randperm(img_ids.numel())[:sample_patches].sort().values
                keep = keep.to(img_ids.device)
                img_x, img_ids, img_pos = img_x[:, keep], img_ids[keep], img_pos[keep]
            img_pad = torch.zeros(img_x.shape[:2], dtype=torch.bool, device=x.device)
            if image_mask is not None:
                img_pad |= ~image_mask.to(torch.bool)[:, None]
            x = torch.cat([img_x, x], dim=1)
            padding = torch.cat([img_pad, padding], dim=1)
            img_buckets = image_rel_buckets(img_ids, img_ids, cfg.image_bucket_size)
        pos = self.positions(text_pos, img_pos)
        # without padding the mask is skipped and the [1, H, T, T] bias broadcasts over the
        # batch (the ONNX graph applies both always: x * 1 and + 0 change no value)
        padded = bool(padding.any())
        if padded:
            x = x * (~padding).unsqueeze(-1).to(x.dtype)
        biases = store = None
        if (img_buckets is not None and sample_patches is None and BIAS_CACHE_BYTES > 0
                and eager_inference(x, pos) and not torch.is_autocast_enabled(x.device.type)):
            shape = (n_text, tuple(images.shape[-2:]))
            biases, store = self.cached_biases(shape, pos.dtype, pos.device, pos.shape[0])
        if biases is None:
            biases = self.layer_biases(pos, text_pos, img_buckets, keep=store is not None)
            if store is not None:
                weights = self.position_weights()
                store["biases"] = (store["last"], tuple(weakref.ref(w) for w in weights),
                                   tuple(tensor_key(w) for w in weights), biases)
        for layer, bias in zip(self.layers, biases, strict=True):
            x = layer(x, bias + key_padding_bias(padding, bias.dtype) if padded else bias)
        return EncoderOutput(self.layer_norm(x), padding, pos)

    def layer_biases(self, pos: torch.Tensor, text_pos: torch.Tensor,
                     img_buckets: torch.Tensor | None, keep: bool = False
                     ) -> Iterable[torch.Tensor]:
        """Each layer's position bias [1, H, T, T] (:meth:`layer_bias`), made as the layers
        ask for them; ``keep``: all of them, each its own tensor (to cache)."""
        cfg = self.cfg
        abs_bias = position_bias(self.pos_q_linear, self.pos_k_linear, pos, pos,
                                 cfg.attention_heads, self.pos_scaling)
        text_buckets = token_rel_buckets(text_pos, text_pos, cfg.token_bucket_size,
                                         cfg.max_source_positions)
        index = buffer = None
        if img_buckets is not None:
            index = self.relative_index(text_buckets, img_buckets)
            if not keep and eager_inference(abs_bias):  # each bias is used up before the next
                buffer = torch.empty_like(abs_bias)
        biases = (self.layer_bias(i, abs_bias, text_buckets, img_buckets, index, buffer)
                  for i in range(len(self.layers)))
        return list(biases) if keep else biases

    def cached_biases(self, key: tuple, dtype: torch.dtype, device: torch.device, t: int
                      ) -> tuple[list[torch.Tensor] | None, TransientCache | None]:
        """The layers' position biases kept from an earlier input of the same shape ``key``
        made from the current weights, or None; with the cache to store new ones in when the
        previous input had this shape too (None otherwise, or where they do not fit in
        :data:`BIAS_CACHE_BYTES`). Inputs whose shapes keep changing (questions of different
        lengths) so make each bias in the one reused buffer, as without a cache."""
        heads = self.cfg.attention_heads
        size = len(self.layers) * heads * t * t * dtype.itemsize
        if size > BIAS_CACHE_BYTES:
            return None, None
        cache = self.__dict__.setdefault(_BIAS_CACHE, TransientCache())
        shape = (key, dtype, device)
        hit = cache.get("biases")
        if hit is not None and hit[0] == shape and same_tensors(hit[1], hit[2],
                                                                self.position_weights()):
            return hit[3], cache
        again = cache.get("last") == shape
        cache.clear()  # one shape at a time: the old biases go before new ones are made
        cache["last"] = shape
        return None, cache if again else None

    def position_weights(self) -> list[torch.Tensor]:
        """Every tensor the position biases are computed from."""
        modules = [self.pos_q_linear, self.pos_k_linear, self.pos_ln, self.image_pos_ln,
                   self.embed_positions, self.embed_image_positions,
                   *self.token_rel_pos_table_list, *self.image_rel_pos_table_list]
        return [p for m in modules for p in m.parameters()]
