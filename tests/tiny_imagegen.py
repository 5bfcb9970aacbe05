"""Tiny text-to-image companions for tests: a taming-layout VQGAN and a CLIP with its BPE
vocabulary, small enough to build in a second, as bytes in the files' published formats."""

from __future__ import annotations

import gzip
import io

import torch
import yaml

from ofa.imagegen.clip import CLIP, CLIPConfig
from ofa.imagegen.vqgan import VQGAN, VQGANConfig

# a VQGAN that doubles its code grid (two levels), and a 1-layer CLIP at 32 px
VQ = VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16,
                 z_channels=32, embed_dim=32, n_embed=8192)
MERGES = ["d o", "do g</w>"]
CLIP_TINY = CLIPConfig(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
                       vision_patch_size=8, context_length=16,
                       vocab_size=512 + len(MERGES) + 2, text_width=64, text_layers=1)


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def vqgan_yaml(cfg: VQGANConfig = VQ) -> str:
    """taming's ``model.yaml`` for ``cfg``."""
    params = {"embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed, "ddconfig": {
        "double_z": False, "z_channels": cfg.z_channels, "resolution": cfg.resolution,
        "in_channels": 3, "out_ch": 3, "ch": cfg.ch, "ch_mult": list(cfg.ch_mult),
        "num_res_blocks": cfg.num_res_blocks, "attn_resolutions": list(cfg.attn_resolutions),
        "dropout": 0.0}}
    return yaml.safe_dump({"model": {"target": "taming.models.vqgan.GumbelVQ",
                                     "params": params}})


def vqgan_ckpt(cfg: VQGANConfig = VQ) -> bytes:
    """A Lightning-style ``last.ckpt`` of a freshly initialised VQGAN."""
    return torch_bytes({"state_dict": VQGAN(cfg).state_dict(), "global_step": 0})


def clip_weights() -> bytes:
    """A CLIP state dict with small random values (its parameters start uninitialised)."""
    clip = CLIP(CLIP_TINY)
    for name, p in clip.state_dict().items():
        p.copy_(torch.ones_like(p) if "ln" in name and name.endswith("weight")
                else torch.randn_like(p) * 0.02)
    return torch_bytes(clip.state_dict())


def clip_vocab() -> bytes:
    """A gzipped BPE merges file in CLIP's format with :data:`MERGES`."""
    return gzip.compress("\n".join(["#version: 0.2", *MERGES, ""]).encode())
