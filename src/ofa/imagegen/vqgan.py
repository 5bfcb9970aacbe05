"""The VQGAN that turns OFA's image codes into pictures and back.

OFA's text-to-image task writes an image as a 32x32 grid of codes (token ``50265 + code``) and
draws it with taming-transformers' "VQGAN OpenImages (f=8), 8192, GumbelQuantization"
(``vqgan_gumbel_f8``; OFA-Sys/OFA issue #236). This module is a port of that model:

* CompVis/taming-transformers taming/modules/diffusionmodules/model.py: ``Encoder``,
  ``Decoder``, ``ResnetBlock``, ``AttnBlock``, ``Upsample``, ``Downsample``;
* CompVis/taming-transformers taming/modules/vqvae/quantize.py: ``GumbelQuantize`` and
  ``VectorQuantizer2`` (the plain VQGAN's quantizer);
* CompVis/taming-transformers taming/models/vqgan.py: ``GumbelVQ`` / ``VQModel``, plus
  ``GumbelVQ.decode_code`` as OFA-Sys/OFA models/taming/models/vqgan.py adds it.

taming-transformers is MIT-licensed, Copyright (c) 2020 Patrick Esser, Robin Rombach and Bjorn
Ommer. Attribute names are taming's, so a checkpoint's ``state_dict`` loads as it is (after
dropping the training-only ``loss.*`` tensors). Files, OFA's token ids and pixels are handled
in :mod:`ofa.imagegen.vqgan_io`:

    from ofa.imagegen.vqgan_io import load_vqgan, preprocess, to_pil
    vq = load_vqgan("image_gen_large_best/")       # or a taming / ModelScope folder or file
    with torch.no_grad():
        images = vq.decode_codes(codes)               # [B, 3, 256, 256] float, roughly [-1, 1]
        pictures = to_pil(images)                     # OFA's clamp and truncation to uint8
        codes = vq.encode(preprocess(pictures))       # [B, 32, 32] int64, argmax
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = ["VQGAN", "VQGANConfig"]


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class VQGANConfig:
    """A taming VQGAN's ``model.params`` (``ddconfig`` flattened). Defaults: vqgan_gumbel_f8."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (32,)
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 8192
    quantizer: Literal["gumbel", "vq"] = "gumbel"  # GumbelVQ, or VQModel's VectorQuantizer2
    dropout: float = 0.0  # training only; kept so that a config round-trips

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        sizes = ("ch", "num_res_blocks", "resolution", "in_channels", "out_ch", "z_channels",
                 "embed_dim", "n_embed")
        for name in sizes:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1 << 20:
                raise InputError(f"VQGAN config: {name} must be a positive integer, got {value!r}")
        if not 1 <= len(self.ch_mult) <= 8 or any(not 0 < m <= 64 for m in self.ch_mult):
            raise InputError(f"VQGAN config: ch_mult must hold 1 to 8 small positive integers, "
                             f"got {list(self.ch_mult)}")
        # every GroupNorm has 32 groups (taming's Normalize), so its channels must split in 32
        odd = [self.ch * m for m in self.ch_mult if self.ch * m % 32]
        if odd:
            raise InputError(f"VQGAN config: ch * ch_mult gives {odd[0]} channels, not a "
                             "multiple of the 32 normalisation groups")
        if self.quantizer not in ("gumbel", "vq"):
            raise InputError(f"VQGAN config: quantizer must be 'gumbel' or 'vq', got "
                             f"{self.quantizer!r}")
        if self.quantizer == "gumbel" and self.embed_dim != self.z_channels:
            # GumbelVQ applies quantize.proj (z_channels inputs) to quant_conv's embed_dim outputs
            raise InputError(f"VQGAN config: a Gumbel VQGAN needs embed_dim == z_channels, got "
                             f"{self.embed_dim} and {self.z_channels}")

    @property
    def downsample_factor(self) -> int:
        """Image pixels per code along each side (8 for vqgan_gumbel_f8)."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid_size(self) -> int:
        """Codes per side of a ``resolution`` image (32 for vqgan_gumbel_f8)."""
        return self.resolution // self.downsample_factor

    @classmethod
    def from_taming(cls, params: Mapping[str, Any], quantizer: str = "gumbel") -> VQGANConfig:
        """From taming's ``model.params`` (``embed_dim``, ``n_embed``, ``ddconfig``: {...}).

        Training-only entries (``lossconfig``, ``kl_weight``, ``temperature_scheduler_config``,
        ``monitor``, ...) are ignored; settings this port does not implement are refused.
        """
        if not isinstance(params, Mapping):
            raise InputError(f"VQGAN config: model.params must be a mapping, got "
                             f"{type(params).__name__}")
        dd = params.get("ddconfig")
        if not isinstance(dd, Mapping):
            raise InputError("VQGAN config: model.params has no ddconfig mapping")
        missing = [k for k in ("embed_dim", "n_embed") if k not in params] + [
            k for k in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution",
                        "z_channels") if k not in dd]
        if missing:
            raise InputError(f"VQGAN config: missing {', '.join(missing)}")
        unsupported = {"double_z": (dd.get("double_z"), False),  # a KL autoencoder setting
                       "resamp_with_conv": (dd.get("resamp_with_conv"), True),
                       "give_pre_end": (dd.get("give_pre_end"), False),
                       "tanh_out": (dd.get("tanh_out"), False),
                       "remap": (params.get("remap"), None)}
        for key, (value, default) in unsupported.items():
            if value is not None and value != default:
                raise InputError(f"VQGAN config: {key}={value!r} is not supported (taming's "
                                 f"released VQGANs use {default!r})")
        for key in ("ch_mult", "attn_resolutions"):
            if not isinstance(dd[key], Sequence) or isinstance(dd[key], str):
                raise InputError(f"VQGAN config: {key} must be a list, got {dd[key]!r}")
        return cls(ch=dd["ch"], ch_mult=tuple(dd["ch_mult"]), num_res_blocks=dd["num_res_blocks"],
                   attn_resolutions=tuple(dd["attn_resolutions"]), resolution=dd["resolution"],
                   in_channels=dd.get("in_channels", 3), out_ch=dd.get("out_ch", 3),
                   z_channels=dd["z_channels"], embed_dim=params["embed_dim"],
                   n_embed=params["n_embed"], quantizer=quantizer,  # type: ignore[arg-type]
                   dropout=float(dd.get("dropout", 0.0)))


# ----------------------------------------------------------------------------- blocks
def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)  # taming's Normalize


class ResnetBlock(nn.Module):
    """norm, swish, 3x3 conv, twice; a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # swish x*sigmoid(x) is silu
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1)
                                                 for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))
        # taming's bmm/softmax/bmm with scale c**-0.5 is exactly what SDPA computes by default
        out = F.scaled_dot_product_attention(q, k, v)  # [b, h*w, c]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming pads right/bottom only, then stride 2


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution: ``block`` i, each followed by ``attn`` i when the level has attention."""

    def __init__(self, cin: int, cout: int, n_blocks: int, attention: bool,
                 dropout: float) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, dropout)
                                   for i in range(n_blocks))
        self.attn = nn.ModuleList(AttnBlock(cout) for _ in range(n_blocks if attention else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        widths = [cfg.ch * m for m in (1, *cfg.ch_mult)]
        self.down = nn.ModuleList()
        for i in range(len(cfg.ch_mult)):
            res = cfg.resolution // 2 ** i
            level = _Level(widths[i], widths[i + 1], cfg.num_res_blocks,
                           res in cfg.attn_resolutions, cfg.dropout)
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(widths[i + 1])
            self.down.append(level)
        self.mid = _Mid(widths[-1], cfg.dropout)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        n = len(cfg.ch_mult)
        top = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = _Mid(top, cfg.dropout)
        # up[i] is level i (taming builds them coarsest first and prepends); each takes the
        # width of the level above it and has num_res_blocks + 1 blocks
        self.up = nn.ModuleList()
        for i in range(n):
            cin = cfg.ch * cfg.ch_mult[min(i + 1, n - 1)]
            level = _Level(cin, cfg.ch * cfg.ch_mult[i], cfg.num_res_blocks + 1,
                           cfg.resolution // 2 ** i in cfg.attn_resolutions, cfg.dropout)
            if i != 0:
                level.upsample = Upsample(cfg.ch * cfg.ch_mult[i])
            self.up.append(level)
        self.norm_out = _norm(cfg.ch * cfg.ch_mult[0])
        self.conv_out = nn.Conv2d(cfg.ch * cfg.ch_mult[0], cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # no tanh: OFA clamps afterwards


# ----------------------------------------------------------------------------- quantizers
class GumbelQuantize(nn.Module):
    """``proj`` gives logits over the codes; ``embed`` is the codebook."""

    def __init__(self, z_channels: int, embed_dim: int, n_embed: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(z_channels, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed.weight

    def indices(self, h: torch.Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        logits = self.proj(h)
        if not sample:
            return logits.argmax(1)
        # taming GumbelQuantize.forward samples even in eval mode: F.gumbel_softmax(logits,
        # tau=1, dim=1, hard=True), whose index is the argmax of softmax((logits + g) / tau)
        # with g = -log(Exp(1)): a draw from softmax(logits) (Gumbel-max), whatever tau is,
        # since the noise is added before dividing. Written out so that a generator can seed
        # it; seeded s, it draws what torch.manual_seed(s) + F.gumbel_softmax draws. The noise
        # is laid out contiguously as there (the conv may return channels-last logits, and
        # empty_like would then hand the same draws to other positions).
        gumbels = -torch.empty_like(logits, memory_format=torch.contiguous_format).exponential_(
            generator=generator).log()
        return (logits + gumbels).softmax(1).argmax(1)  # softmax kept: ties break as taming's


class VectorQuantize(nn.Module):
    """VQModel's nearest-codebook-entry quantizer (taming ``VectorQuantizer2``)."""

    def __init__(self, embed_dim: int, n_embed: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight

    def indices(self, h: torch.Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if sample:
            raise InputError("sampled encoding needs a Gumbel VQGAN; this one has a plain "
                             "vector quantizer (nearest codebook entry only)")
        b, c, hh, ww = h.shape
        z = h.permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight
        # the same expansion of |z - e|^2 as taming, so that near ties break the same way
        d = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()
        return d.argmin(1).view(b, hh, ww)


# ----------------------------------------------------------------------------- model
class VQGAN(nn.Module):
    """taming ``GumbelVQ`` (or ``VQModel``): images <-> grids of codebook indices."""

    def __init__(self, config: VQGANConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or VQGANConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize: GumbelQuantize | VectorQuantize = (
            GumbelQuantize(cfg.z_channels, cfg.embed_dim, cfg.n_embed) if cfg.quantizer == "gumbel"
            else VectorQuantize(cfg.embed_dim, cfg.n_embed))
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def _codes(self, codes: Any) -> torch.Tensor:
        codes = torch.as_tensor(codes, device=self.quantize.codebook.device)
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise InputError(f"codes must be integers, got {codes.dtype}")
        if codes.dim() == 2:  # [B, n*n]: a flat grid, as OFA's generator returns it
            side = math.isqrt(codes.shape[1])
            if side * side != codes.shape[1] or side == 0:
                raise InputError(f"codes of shape {list(codes.shape)}: {codes.shape[1]} codes "
                                 "per image is no square grid; pass [B, H, W]")
            codes = codes.view(codes.shape[0], side, side)
        if codes.dim() != 3 or codes.numel() == 0:
            raise InputError(f"codes must have shape [B, H, W] or [B, H*W], got "
                             f"{list(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.config.n_embed:
            raise InputError(f"codes must lie in [0, {self.config.n_embed}), got "
                             f"{int(codes.min())}..{int(codes.max())}")
        return codes.long()

    def codebook_entries(self, codes: Any) -> torch.Tensor:
        """[B, H, W] (or [B, H*W]) codes -> z_q [B, embed_dim, H, W]."""
        # OFA's decode_code does one_hot(codes) einsum codebook; a lookup is the same numbers
        return F.embedding(self._codes(codes), self.quantize.codebook).permute(0, 3, 1, 2)

    def decode_codes(self, codes: Any) -> torch.Tensor:
        """Codes -> images [B, out_ch, 8H, 8W] in about [-1, 1] (unclamped, model dtype).

        OFA-Sys/OFA tasks/mm_tasks/image_gen.py::inference_image: ``decode_code`` =
        ``get_codebook_entry`` -> ``post_quant_conv`` -> ``decoder``.
        """
        return self.decoder(self.post_quant_conv(self.codebook_entries(codes)))

    def encode_to_prequant(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> h [B, embed_dim, H/8, W/8] (taming ``encode_to_prequant``)."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 \
                or images.shape[1] != self.config.in_channels:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise InputError(f"images must be a [B, {self.config.in_channels}, H, W] tensor, "
                             f"got {shape}")
        weight = self.quant_conv.weight  # preprocess gives float32 on the CPU
        return self.quant_conv(self.encoder(images.to(device=weight.device, dtype=weight.dtype)))

    def code_logits(self, images: torch.Tensor) -> torch.Tensor:
        """A Gumbel VQGAN's logits over the codes, [B, n_embed, H/8, W/8]."""
        if not isinstance(self.quantize, GumbelQuantize):
            raise InputError("code logits exist only for a Gumbel VQGAN")
        return self.quantize.proj(self.encode_to_prequant(images))

    def encode(self, images: torch.Tensor, *, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] (see :func:`preprocess`) -> codes [B, H/8, W/8] int64.

        The default is deterministic: each position's most likely code (``proj(h).argmax``;
        nearest entry for a plain VQGAN). ``sample=True`` does what OFA's code-generation script
        (OFA-Sys/OFA run_scripts/image_gen/generate_code.py, through taming's
        ``GumbelQuantize.forward``) does even in eval mode: draw each code from
        softmax(logits) by the Gumbel-max trick (taming's temperature does not change the
        draw); seed it with ``generator``.
        """
        return self.quantize.indices(self.encode_to_prequant(images), sample, generator)
