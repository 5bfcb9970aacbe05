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


def write_vqgan(folder) -> object:
    """``folder`` holding a tiny VQGAN as OFA's release lays it out (model.yaml +
    last.ckpt); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(vqgan_yaml())
    (folder / "last.ckpt").write_bytes(vqgan_ckpt())
    return folder


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


def write_imagegen_files(root, bpe_dir, code_image_size: int = 64) -> dict:
    """Under ``root``: a random tiny OFA model folder whose decoder draws
    ``(code_image_size / 8)**2`` codes, a taming-layout VQGAN folder (configs/model.yaml +
    checkpoints/last.ckpt) and a CLIP state dict with its vocabulary beside it, as a user
    has them. Returns their paths: ``model``, ``vqgan``, ``clip``."""
    from ofa.checkpoints import save_native
    from ofa.model import OFAModel
    from ofa.tokenizer import OFATokenizer

    from conftest import tiny_config

    torch.manual_seed(0)
    model_dir = root / "ofa-tiny-imagegen"
    save_native(OFAModel(tiny_config(code_image_size=code_image_size)).eval(), model_dir,
                OFATokenizer.from_dir(bpe_dir))
    vq_dir = root / "vqgan"
    (vq_dir / "configs").mkdir(parents=True)
    (vq_dir / "checkpoints").mkdir()
    (vq_dir / "configs" / "model.yaml").write_text(vqgan_yaml())
    (vq_dir / "checkpoints" / "last.ckpt").write_bytes(vqgan_ckpt())
    clip_dir = root / "clip"
    clip_dir.mkdir()
    (clip_dir / "ViT-tiny.pt").write_bytes(clip_weights())
    (clip_dir / "bpe_simple_vocab_16e6.txt.gz").write_bytes(clip_vocab())
    return {"model": model_dir, "vqgan": vq_dir, "clip": clip_dir / "ViT-tiny.pt"}


class TinyInception(torch.nn.Module):
    """A stand-in for :class:`ofa.metrics.inception.InceptionV3` with its interface (``kind``,
    ``num_classes``, uint8 images of any size in, ``(pool, logits)`` out) and 6 features: each
    channel's mean and standard deviation in [0, 1]. FID on 2048 features costs minutes of
    CPU (a 2048 x 2048 eigen-decomposition); on these it is instant."""

    kind = "tf-fid"
    num_classes = 5

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("classes", torch.linspace(-3, 3, 6 * 5).reshape(6, 5))

    @staticmethod
    def pool(images: torch.Tensor) -> torch.Tensor:
        x = images.double() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert images.dtype == torch.uint8 and images.dim() == 4
        pool = self.pool(images)
        return pool, pool @ self.classes.double()


def numpy_fid(a, b) -> float:
    """FID of two feature arrays [N, D] by its formula, in numpy (symmetric square root of
    the covariance product): the reference the metric's tests compare with."""
    import numpy as np

    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root @ s2 @ root).clip(0)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)
