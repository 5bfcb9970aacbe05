"""Train a small VQGAN image tokenizer for ShapesWorld from nothing, on the CPU.

OFA draws a picture as a grid of VQGAN codes (:mod:`ofa.imagegen.vqgan`). Its released
tokenizer (taming's vqgan_gumbel_f8, 8192 codes, 256 px) is a download; this module trains one
that fits ShapesWorld (``ofa.data.shapes``) in minutes, so that a small OFA can learn caption ->
codes offline. The result is written in taming's layout (``model.yaml`` + ``last.ckpt``), which
:func:`ofa.imagegen.vqgan_io.load_vqgan` reads::

    from ofa.imagegen.train_vqgan import load_vqgan_train_config, train_vqgan
    metrics = train_vqgan(load_vqgan_train_config("configs/shapes-vqgan.yaml"))

or ``ofa train-vqgan configs/shapes-vqgan.yaml``. Two recipes of CompVis/taming-transformers,
written anew here. ``quantizer: vq`` is ``VQModel`` (taming/models/vqgan.py, with
taming/modules/vqvae/quantize.py ``VectorQuantizer2``): each position takes its nearest
codebook entry, the decoder's gradient passes straight through to the encoder, and the codebook
and commitment terms pull entries and encoder outputs together; codes no batch chose are moved
onto encoder outputs every ``restart_interval`` steps early in training (a standard remedy for
dead codes, not in taming). On ShapesWorld this is the one that works in a few thousand CPU
steps (configs/shapes-vqgan.yaml says what was measured). ``quantizer: gumbel`` is
``GumbelVQ`` (taming's ``GumbelQuantize``, the quantizer of OFA's released tokenizer):

codes are drawn with the Gumbel-softmax trick at a temperature annealed by a cosine
(taming/lr_scheduler.py ``LambdaWarmUpCosineScheduler``, which ``GumbelVQ.temperature_scheduling``
applies every step), hard one-hot forward with the soft sample's gradient (``straight_through``),
and a KL term from each position's code distribution to the uniform prior (``kl_weight``).

Both: reconstruction is L1 (taming's ``rec_loss``), optionally plus MSE, and Adam with taming's
betas (0.5, 0.9) (``VQModel.configure_optimizers``) under the project's warmup + linear decay
(:mod:`ofa.train.optim`). taming adds LPIPS and a patch discriminator; LPIPS needs VGG weights
(not available offline), and neither is needed for the ShapesWorld checker to read the
reconstructions back (metrics.json of the shipped tokenizer), so neither is here.

Determinism: the weights are initialised under ``seed``, batches, Gumbel noise and code
restarts come from generators seeded by it, and ``torch.use_deterministic_algorithms(True)``
and a fixed thread count (``threads``) are set while training. The same config, torch
version, CPU kind (its ``torch.backends.cpu.get_cpu_capability()``) and thread count then
write byte-identical
``model.yaml``, ``last.ckpt`` and ``metrics.json`` (wall-clock times are returned, never
written). Codes for OFA's training targets are the deterministic nearest entry or argmax
(``VQGAN.encode``); :func:`render_scenes` + :func:`pixels_to_input` give its input.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import time
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..errors import InputError
from ..files import replace_folder, replacing
from .vqgan import VQGAN, VQGANConfig

__all__ = ["OUTPUT_FILES", "VQGANTrainConfig", "build_vqgan_train_config", "evaluate_vqgan",
           "far_tiles", "foreground_mask", "gumbel_one_hot", "load_vqgan_train_config",
           "noise_at", "pixels_to_input", "psnr", "render_foreground", "render_scenes",
           "restart_dead_codes", "shape_scales", "temperature_at", "train_vqgan", "training_loss",
           "write_taming_folder"]

OUTPUT_FILES = ("model.yaml", "last.ckpt", "metrics.json")
_SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class VQGANTrainConfig:
    """Everything one training run depends on (a YAML mapping with these keys)."""

    output_dir: str = "runs/shapes-vqgan"  # model.yaml + last.ckpt + metrics.json go here
    # --- the image: scenes are rendered at render_size (ShapesWorld's native 128 px) and
    # resized to ``resolution`` with LANCZOS, as vqgan_io.preprocess does for OFA's codes
    resolution: int = 64
    # --- architecture (taming ddconfig; 4 levels = 8 px per code, OFA's code_image_size / 8)
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    z_channels: int = 64
    n_embed: int = 256
    # "gumbel": taming's GumbelVQ (embed_dim = z_channels: it projects them to code logits);
    # "vq": taming's VQModel, nearest codebook entry with a straight-through gradient
    quantizer: str = "gumbel"
    embed_dim: int | None = None  # vq only: the codebook's width (default z_channels)
    # --- data, from ShapesWorld's API (no files): train scenes 0..train_scenes-1 of
    # train_split, evaluation on scenes 0..test_scenes-1 of test_split
    world_seed: int = 0  # `ofa data shapes` default
    max_shapes: int = 3  # `ofa data shapes` default
    render_size: int = 128
    train_split: str = "train"
    train_scenes: int = 10000
    test_split: str = "test"
    test_scenes: int = 500
    # --- optimisation
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    end_lr: float = 0.0
    betas: tuple[float, float] = (0.5, 0.9)  # taming VQModel.configure_optimizers
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # 0: no clipping
    # --- losses
    l1_weight: float = 1.0
    mse_weight: float = 0.0
    # reconstruction errors on the shapes' pixels count 1 + foreground_weight times: the shapes
    # are about a tenth of a scene and carry everything its caption says
    foreground_weight: float = 0.0
    # > 0: each shape (a connected part of the foreground) has its foreground weight scaled by
    # the median shape area over its own area, at most shape_balance times: a small shape's few
    # pixels otherwise cost little when drawn wrong, and small diamonds came back round
    shape_balance: float = 0.0
    # vq: pulls the encoder output at tiles with no shape pixel in them or their 8 neighbours
    # towards its output for the same scene drawn without its shapes (squared error, weighted
    # like the codebook term): GroupNorm's per-image statistics otherwise let a shape change
    # the codes of every tile, and text-to-image must then predict the whole grid anew
    context_weight: float = 0.0
    kl_weight: float = 5e-4  # taming GumbelQuantize's default (GumbelVQ passes 1e-8)
    usage_weight: float = 0.0  # the same KL for the batch's mean code distribution
    commitment_weight: float = 0.25  # vq: taming VectorQuantizer2's beta
    # vq: every restart_interval steps (0: never) the codes no batch chose since the last
    # restart are moved onto encoder outputs of the current batch, until restart_until
    # (default: half the steps), so that the whole codebook ends up in use
    restart_interval: int = 0
    restart_until: int | None = None
    # --- Gumbel temperature: cosine from temperature_start to temperature_end over
    # temperature_steps (default: all steps), as taming's LambdaWarmUpCosineScheduler
    temperature_start: float = 1.0
    temperature_end: float = 0.1
    temperature_steps: int | None = None
    # scale of the Gumbel noise, annealed by the same cosine from 1 (taming: always 1) to
    # gumbel_noise_end: at 0 the last steps train on the argmax codes that encoding gives
    gumbel_noise_end: float = 1.0
    straight_through: bool = True  # hard one-hot codes forward (taming's default)
    # --- run
    seed: int = 0
    threads: int = 2  # results are reproducible for a fixed count
    save_dtype: str = "fp32"  # weights in last.ckpt: fp32 or fp16
    eval_batch_size: int = 50
    log_interval: int = 100  # steps per entry of metrics.json's train_loss curve

    @property
    def vqgan_config(self) -> VQGANConfig:
        """The architecture as :class:`VQGANConfig` (a Gumbel VQGAN)."""
        return VQGANConfig(ch=self.ch, ch_mult=self.ch_mult, num_res_blocks=self.num_res_blocks,
                           attn_resolutions=self.attn_resolutions, resolution=self.resolution,
                           z_channels=self.z_channels,
                           embed_dim=self.embed_dim or self.z_channels, n_embed=self.n_embed,
                           quantizer=self.quantizer)

    @property
    def restart_steps(self) -> int:
        return self.steps // 2 if self.restart_until is None else self.restart_until

    @property
    def temperature_decay_steps(self) -> int:
        return self.steps if self.temperature_steps is None else self.temperature_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), as the YAML file writes it."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


_FIELDS = {f.name: f for f in dataclasses.fields(VQGANTrainConfig)}
_HINTS = typing.get_type_hints(VQGANTrainConfig)


def _coerce(name: str, value: Any, where: str) -> Any:
    """``value`` as the field's type, or a one-line InputError (YAML gives ints for floats and
    lists for tuples; booleans are never numbers)."""
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if optional:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    shown = f"{where}: {name} must be"
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{shown} a list, got {value!r}")
        item = typing.get_args(hint)[0]
        out = tuple(_coerce_scalar(name, v, item, f"{shown} a list of {item.__name__}s")
                    for v in value)
        fixed = typing.get_args(hint)
        if Ellipsis not in fixed and len(out) != len(fixed):
            raise InputError(f"{shown} a list of {len(fixed)} numbers, got {value!r}")
        return out
    return _coerce_scalar(name, value, hint,
                          f"{shown} {'null or ' if optional else ''}a{'n' * (hint is int)} "
                          f"{hint.__name__}")


def _coerce_scalar(name: str, value: Any, kind: type, message: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{message}, got {value!r}")
        return value
    if isinstance(value, bool):
        raise InputError(f"{message}, got {value!r}")
    if kind is int and isinstance(value, int):
        return value
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise InputError(f"{message}, got {value!r}")


def _validate(cfg: VQGANTrainConfig, where: str) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise InputError(f"{where}: {message}")

    positive = ("ch", "num_res_blocks", "z_channels", "n_embed", "render_size", "train_scenes",
                "test_scenes", "steps", "batch_size", "threads", "eval_batch_size",
                "log_interval", "resolution")
    for name in positive:
        need(getattr(cfg, name) >= 1, f"{name} must be a positive integer, got "
                                      f"{getattr(cfg, name)!r}")
    need(2 <= cfg.n_embed <= 65536, f"n_embed must lie in [2, 65536], got {cfg.n_embed}")
    factor = 2 ** (len(cfg.ch_mult) - 1)
    need(16 <= cfg.resolution <= cfg.render_size and cfg.resolution % factor == 0,
         f"resolution must be a multiple of {factor} (2 ** (len(ch_mult) - 1)) between 16 and "
         f"render_size ({cfg.render_size}), got {cfg.resolution}")
    need(cfg.render_size >= 32, f"render_size must be >= 32, got {cfg.render_size}")
    need(cfg.world_seed >= 0, f"world_seed must be >= 0, got {cfg.world_seed}")
    need(1 <= cfg.max_shapes <= 4, f"max_shapes must lie in 1..4, got {cfg.max_shapes}")
    need(cfg.batch_size <= cfg.train_scenes, f"batch_size ({cfg.batch_size}) must not exceed "
                                             f"train_scenes ({cfg.train_scenes})")
    need(0 <= cfg.warmup_steps < cfg.steps, f"warmup_steps must lie in [0, steps), got "
                                            f"{cfg.warmup_steps}")
    for name in ("lr", "temperature_start", "temperature_end"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value > 0, f"{name} must be a positive number, got "
                                                 f"{value!r}")
    for name in ("end_lr", "weight_decay", "clip_norm", "l1_weight", "mse_weight", "kl_weight",
                 "usage_weight", "gumbel_noise_end", "foreground_weight", "context_weight",
                 "shape_balance"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value >= 0, f"{name} must be a number >= 0, got "
                                                  f"{value!r}")
    need(cfg.context_weight == 0 or cfg.quantizer == "vq",
         "context_weight applies to a vq quantizer only")
    need(cfg.shape_balance == 0 or cfg.foreground_weight > 0,
         "shape_balance scales foreground_weight: set foreground_weight > 0")
    need(cfg.l1_weight + cfg.mse_weight > 0, "l1_weight or mse_weight must be positive")
    need(all(0 <= b < 1 for b in cfg.betas), f"betas must lie in [0, 1), got {list(cfg.betas)}")
    need(cfg.temperature_steps is None or cfg.temperature_steps >= 1,
         f"temperature_steps must be a positive integer or null, got {cfg.temperature_steps!r}")
    need(cfg.quantizer in ("gumbel", "vq"), f"quantizer must be gumbel or vq, got "
                                            f"{cfg.quantizer!r}")
    need(cfg.embed_dim is None or cfg.quantizer == "vq" or cfg.embed_dim == cfg.z_channels,
         "a gumbel quantizer needs embed_dim equal to z_channels (or unset)")
    need(cfg.embed_dim is None or cfg.embed_dim >= 1, f"embed_dim must be a positive integer "
                                                      f"or null, got {cfg.embed_dim!r}")
    need(cfg.restart_interval >= 0, f"restart_interval must be >= 0, got "
                                    f"{cfg.restart_interval}")
    need(cfg.restart_until is None or cfg.restart_until >= 0,
         f"restart_until must be >= 0 or null, got {cfg.restart_until!r}")
    need(math.isfinite(cfg.commitment_weight) and cfg.commitment_weight >= 0,
         f"commitment_weight must be a number >= 0, got {cfg.commitment_weight!r}")
    need(cfg.save_dtype in _SAVE_DTYPES, f"save_dtype must be fp32 or fp16, got "
                                         f"{cfg.save_dtype!r}")
    need(bool(cfg.output_dir), "output_dir must not be empty")
    try:
        cfg.vqgan_config  # noqa: B018  (VQGANConfig checks the architecture)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def build_vqgan_train_config(data: Mapping[str, Any] | None,
                             where: str = "config") -> VQGANTrainConfig:
    """A checked :class:`VQGANTrainConfig` from a plain mapping (what the YAML file holds).

    Unknown keys, wrong types and out-of-range values are one-line InputErrors naming the key.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise InputError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise InputError(f"unknown setting(s) in {where}: {', '.join(unknown)}; known: "
                         f"{', '.join(_FIELDS)}")
    cfg = VQGANTrainConfig(**{k: _coerce(k, v, where) for k, v in data.items()})
    _validate(cfg, where)
    return cfg


def load_vqgan_train_config(path: str | os.PathLike[str],
                            overrides: Mapping[str, Any] | None = None) -> VQGANTrainConfig:
    """Read a YAML config; ``overrides`` replace top-level keys (``{"output_dir": ...}``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{p}: invalid YAML ({first})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p} must hold a mapping of settings, got {type(data).__name__}")
    return build_vqgan_train_config({**data, **(overrides or {})}, str(p))


# ----------------------------------------------------------------------------- data
_FOREGROUND_LEVEL = 8  # of 255: LANCZOS ringing around a shape stays below it


def render_scenes(world: Any, split: str, count: int, resolution: int, start: int = 0,
                  plain: bool = False, shapeless: bool = False
                  ) -> tuple[torch.Tensor, list[str]]:
    """Scenes ``start .. start+count-1`` of ``split``: uint8 pixels [N, res, res, 3] and
    captions. Each render is resized with LANCZOS, as :func:`ofa.imagegen.vqgan_io.preprocess`
    does (OFA-Sys/OFA run_scripts/image_gen/generate_code.py), so these pixels are what the
    VQGAN sees when OFA's training targets are encoded. ``plain``: :meth:`Scene.plain` renders;
    ``shapeless``: each scene drawn without its shapes (the captions stay the scenes')."""
    pixels = np.empty((count, resolution, resolution, 3), dtype=np.uint8)
    captions = []
    for i in range(count):
        scene = world.scene(split, start + i)
        drawn = scene.plain() if plain else scene
        image = (dataclasses.replace(drawn, shapes=()) if shapeless else drawn).render()
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.LANCZOS)
        pixels[i] = np.asarray(image)
        captions.append(scene.caption())
    return torch.from_numpy(pixels), captions


def foreground_mask(drawn: torch.Tensor, shapeless: torch.Tensor) -> torch.Tensor:
    """bool [N, H, W]: where uint8 scenes [N, H, W, 3] differ from the same scenes drawn
    without their shapes, by more than LANCZOS ringing: the shapes' pixels."""
    return (drawn.short() - shapeless.short()).abs().amax(-1) > _FOREGROUND_LEVEL


def render_foreground(world: Any, split: str, count: int, resolution: int, start: int = 0,
                      plain: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the shapes are in :func:`render_scenes`' pixels: bool [N, res, res]
    (:func:`foreground_mask`); and the scenes drawn without their shapes, uint8
    [N, res, res, 3]. ``plain``: :meth:`Scene.plain` renders."""
    drawn, _ = render_scenes(world, split, count, resolution, start, plain)
    empty, _ = render_scenes(world, split, count, resolution, start, plain, shapeless=True)
    return foreground_mask(drawn, empty), empty


def shape_scales(foreground: torch.Tensor, cap: float) -> torch.Tensor:
    """float [N, H, W]: for each pixel of a shape (a 4-connected part of ``foreground``, bool
    [N, H, W]) the median shape area over all the images divided by its shape's area, at most
    ``cap``; 0 off the shapes. Touching shapes count as one."""
    from ..data.shapes_check import label_components

    labelled = [label_components(mask.numpy().astype(np.int8)) for mask in foreground]
    areas = [np.bincount(labels.ravel(), minlength=n + 1)[1:] for labels, n in labelled]
    every = np.concatenate(areas) if areas else np.zeros(0)
    if every.size == 0:
        return torch.zeros(foreground.shape)
    median = float(np.median(every))
    scales = np.zeros(foreground.shape, dtype=np.float32)
    for i, ((labels, _), area) in enumerate(zip(labelled, areas, strict=True)):
        per_label = np.concatenate([[0.0], np.minimum(median / np.maximum(area, 1), cap)])
        scales[i] = per_label[labels]
    return torch.from_numpy(scales)


def far_tiles(foreground: torch.Tensor, factor: int) -> torch.Tensor:
    """bool [B, H/f, W/f]: the code positions with no ``foreground`` pixel ([B, H, W]) in
    their tile or the 8 tiles around it."""
    b, h, w = foreground.shape
    tiles = foreground.view(b, h // factor, factor, w // factor, factor).any(4).any(2)
    near = F.max_pool2d(tiles[:, None].float(), 3, stride=1, padding=1)[:, 0]
    return near == 0


def pixels_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> the VQGAN's input [N, 3, H, W] in [-1, 1]: the same arithmetic as
    :func:`ofa.imagegen.vqgan_io.preprocess` (``ToTensor`` then ``2x - 1``)."""
    x = pixels.permute(0, 3, 1, 2).float().div(255)
    return 2.0 * x - 1.0


# ----------------------------------------------------------------------------- losses
def _cosine(cfg: VQGANTrainConfig, step: int, start: float, end: float) -> float:
    """taming's LambdaWarmUpCosineScheduler without warmup (taming/lr_scheduler.py):
    ``end + (start - end) * (1 + cos(pi * t)) / 2``, t = step / temperature_steps capped at 1."""
    t = min(step / cfg.temperature_decay_steps, 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(t * math.pi))


def temperature_at(cfg: VQGANTrainConfig, step: int) -> float:
    """The Gumbel-softmax temperature of ``step`` (what GumbelVQ.temperature_scheduling sets)."""
    return _cosine(cfg, step, cfg.temperature_start, cfg.temperature_end)


def noise_at(cfg: VQGANTrainConfig, step: int) -> float:
    """The scale of the Gumbel noise at ``step``, from 1 to ``gumbel_noise_end``.

    Why: the forward code of a hard Gumbel-softmax sample is ``argmax(logits + g)`` whatever
    the temperature, a draw from softmax(logits). Trained on draws alone, a small VQGAN learns
    to spread an image over the statistics of neighbouring draws (broad distributions, few
    distinct modes), and the argmax codes OFA is trained on then decode badly; shrinking the
    noise makes the last steps train on the argmax codes themselves.
    """
    return _cosine(cfg, step, 1.0, cfg.gumbel_noise_end)


def gumbel_one_hot(logits: torch.Tensor, temperature: float, hard: bool,
                   generator: torch.Generator | None = None, noise: float = 1.0
                   ) -> torch.Tensor:
    """A Gumbel-softmax sample over dim 1 (what taming's GumbelQuantize gets from
    ``F.gumbel_softmax``), with a generator so that a run can be seeded on its own.

    ``hard``: the forward value is the one-hot of the sample's argmax and the gradient is the
    soft sample's (straight-through); otherwise the soft sample itself. ``noise`` scales the
    Gumbel noise (1: a true sample; 0: the argmax of the logits, see :func:`noise_at`).
    """
    gumbels = -torch.empty_like(logits, memory_format=torch.contiguous_format).exponential_(
        generator=generator).log()
    soft = ((logits + noise * gumbels) / temperature).softmax(1)
    if not hard:
        return soft
    index = soft.argmax(1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(1, index, 1.0)
    return one_hot - soft.detach() + soft


def training_loss(model: VQGAN, x: torch.Tensor, cfg: VQGANTrainConfig, step: int,
                  generator: torch.Generator | None = None, usage: torch.Tensor | None = None,
                  foreground: torch.Tensor | None = None, empty: torch.Tensor | None = None,
                  scales: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch ``x`` ([B, 3, H, W] in [-1, 1]) at ``step`` and its parts.
    ``usage`` (vq): per-code counts, incremented by the codes this batch chose.
    ``foreground``: bool [B, H, W], the shapes' pixels (weighted by ``foreground_weight``).
    ``empty``: the same scenes without their shapes, like ``x`` (for ``context_weight``).
    ``scales``: float [B, H, W], per pixel, what ``foreground_weight`` is multiplied by
    (:func:`shape_scales`, for ``shape_balance``; default 1 on every shape pixel).

    A vq model: VQModel's forward with the VQ-VAE codebook and commitment terms
    (``|sg(z) - e|^2 + beta |z - sg(e)|^2``; taming's VectorQuantizer2 with ``legacy=False``).
    A gumbel model: GumbelVQ's forward (taming/models/vqgan.py ``VQModel.forward`` with
    taming/modules/vqvae/quantize.py ``GumbelQuantize.forward``): encoder, quant_conv, code
    logits, a Gumbel-softmax sample, its mix of codebook rows, post_quant_conv, decoder. The KL
    term is ``sum_n q_n log(q_n * n_embed)`` per position, averaged (q = softmax(logits)).
    """
    quantize = model.quantize
    weights = None
    if foreground is not None and cfg.foreground_weight:
        emphasis = foreground if scales is None else foreground * scales
        weights = 1 + cfg.foreground_weight * emphasis[:, None].to(x.dtype)
    if cfg.quantizer == "vq":
        context = None
        if cfg.context_weight:
            if foreground is None or empty is None:
                raise ValueError("context_weight needs foreground and empty")
            context = empty, far_tiles(foreground, model.config.downsample_factor)
        return _vq_loss(model, x, cfg, usage, weights, context)
    logits = quantize.proj(model.encode_to_prequant(x))
    codes = gumbel_one_hot(logits, temperature_at(cfg, step), cfg.straight_through, generator,
                           noise_at(cfg, step))
    z_q = torch.einsum("bnhw,nd->bdhw", codes, quantize.codebook)
    rec, l1, mse = _reconstruction(model.decoder(model.post_quant_conv(z_q)), x, cfg, weights)
    q = logits.softmax(1)
    kl = (q * torch.log(q * cfg.n_embed + 1e-10)).sum(1).mean()
    mean_q = q.mean((0, 2, 3))
    spread = (mean_q * torch.log(mean_q * cfg.n_embed + 1e-10)).sum()
    loss = rec + cfg.kl_weight * kl + cfg.usage_weight * spread
    parts = {"loss": loss, "l1": l1, "mse": mse, "kl": kl, "usage": spread}
    return loss, {k: v.item() for k, v in parts.items()}


def _reconstruction(xrec: torch.Tensor, x: torch.Tensor, cfg: VQGANTrainConfig,
                    weights: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the loss's reconstruction term, L1, MSE) of a reconstruction; ``weights`` [B, 1, H, W]
    weigh the pixels in the term (normalised to mean 1), never in the L1 and MSE reported."""
    diff = xrec - x
    l1, mse = diff.abs().mean(), diff.pow(2).mean()
    if weights is None:
        return cfg.l1_weight * l1 + cfg.mse_weight * mse, l1, mse
    w = weights / weights.mean()
    term = cfg.l1_weight * (w * diff.abs()).mean() + cfg.mse_weight * (w * diff.pow(2)).mean()
    return term, l1, mse


def _vq_loss(model: VQGAN, x: torch.Tensor, cfg: VQGANTrainConfig,
             usage: torch.Tensor | None, weights: torch.Tensor | None,
             context: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    z = model.encode_to_prequant(x)
    with torch.no_grad():
        codes = model.quantize.indices(z)
    if usage is not None:
        usage += torch.bincount(codes.flatten(), minlength=cfg.n_embed)
    e = model.codebook_entries(codes)
    codebook = (e - z.detach()).pow(2).mean()
    commitment = (z - e.detach()).pow(2).mean()
    z_q = z + (e - z).detach()  # straight-through: the decoder's gradient reaches the encoder
    rec, l1, mse = _reconstruction(model.decoder(model.post_quant_conv(z_q)), x, cfg, weights)
    loss = rec + codebook + cfg.commitment_weight * commitment
    parts = {"loss": loss, "l1": l1, "mse": mse, "codebook": codebook, "commitment": commitment}
    if context is not None:
        empty, far = context
        with torch.no_grad():
            target = model.encode_to_prequant(empty)
        per_tile = (z - target).pow(2).mean(1)  # [B, h, w]
        locality = (per_tile * far).sum() / far.sum().clamp(min=1)
        loss = loss + cfg.context_weight * locality
        parts.update(loss=loss, context=locality)
    return loss, {k: v.item() for k, v in parts.items()}


@torch.no_grad()
def restart_dead_codes(model: VQGAN, x: torch.Tensor, usage: torch.Tensor,
                       generator: torch.Generator) -> int:
    """Move every code with ``usage`` 0 onto an encoder output of the batch ``x`` (drawn
    with ``generator``, without repeats while there are enough); returns how many moved."""
    dead = (usage == 0).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    z = model.encode_to_prequant(x)
    z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    order = torch.randperm(z.shape[0], generator=generator)
    picks = order.repeat(math.ceil(dead.numel() / z.shape[0]))[:dead.numel()]
    model.quantize.codebook[dead] = z[picks]
    return int(dead.numel())


# ----------------------------------------------------------------------------- evaluation
def psnr(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 images [N, H, W, 3] (peak 255; capped at 100 dB when an
    image is reproduced exactly)."""
    mse = (reconstructed.double() - original.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(255.0**2 / mse.clamp_min(255.0**2 * 1e-10))).float()


def _check_shares(images: torch.Tensor, captions: Sequence[str]) -> dict[str, float]:
    from ..data.shapes_check import check, summary

    results = [check(im.numpy(), cap) for im, cap in zip(images, captions, strict=True)]
    return {k: round(v, 6) for k, v in summary(results).items()}


@torch.no_grad()
def evaluate_vqgan(model: VQGAN, pixels: torch.Tensor, captions: Sequence[str],
                   batch_size: int = 50) -> dict[str, Any]:
    """Reconstruction quality of ``model`` on uint8 scenes [N, H, W, 3] with their captions.

    Each image is encoded to argmax codes (what OFA's training targets are) and decoded, then
    brought to uint8 as OFA does (:func:`~ofa.imagegen.vqgan_io.to_uint8`). Returns the mean
    and lowest per-image PSNR, the ShapesWorld checker's shares on the reconstructions and on
    the originals (the ceiling), and codebook use on these images (distinct codes, and the
    perplexity of the code histogram: the number of equally used codes it is worth).
    """
    from .vqgan_io import to_uint8

    model.eval()
    recon, codes = [], []
    for chunk in pixels.split(batch_size):
        c = model.encode(pixels_to_input(chunk))
        codes.append(c)
        recon.append(to_uint8(model.decode_codes(c)))
    rec = torch.cat(recon)
    all_codes = torch.cat(codes).flatten()
    counts = torch.bincount(all_codes, minlength=model.config.n_embed).double()
    p = counts[counts > 0] / counts.sum()
    values = psnr(rec, pixels)
    return {
        "psnr": round(float(values.mean()), 4),
        "psnr_min": round(float(values.min()), 4),
        "reconstructions": _check_shares(rec, captions),
        "originals": _check_shares(pixels, captions),
        "codes_used": int((counts > 0).sum()),
        "code_perplexity": round(float(torch.exp(-(p * p.log()).sum())), 3),
    }


# ----------------------------------------------------------------------------- files
def _model_yaml(cfg: VQGANTrainConfig) -> str:
    """taming's ``model.yaml`` for the trained GumbelVQ or VQModel (configs/*.yaml layout of
    CompVis/taming-transformers). The loss is taming's ``DummyLoss``: the checkpoint keeps no
    loss weights, and taming can still build the model from this file."""
    import yaml

    v = cfg.vqgan_config
    params: dict[str, Any] = {
        "embed_dim": v.embed_dim, "n_embed": v.n_embed,
        "ddconfig": {"double_z": False, "z_channels": v.z_channels, "resolution": v.resolution,
                     "in_channels": v.in_channels, "out_ch": v.out_ch, "ch": v.ch,
                     "ch_mult": list(v.ch_mult), "num_res_blocks": v.num_res_blocks,
                     "attn_resolutions": list(v.attn_resolutions), "dropout": 0.0},
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
    }
    target = "taming.models.vqgan.VQModel"
    if cfg.quantizer == "gumbel":
        target = "taming.models.vqgan.GumbelVQ"
        params["kl_weight"] = cfg.kl_weight
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": cfg.temperature_decay_steps,
                       "lr_start": cfg.temperature_start, "lr_max": cfg.temperature_start,
                       "lr_min": cfg.temperature_end}}
    return yaml.safe_dump({"model": {"base_learning_rate": cfg.lr, "target": target,
                                     "params": params}}, sort_keys=True)


def write_taming_folder(model: VQGAN, cfg: VQGANTrainConfig, folder: str | os.PathLike[str],
                        global_step: int) -> Path:
    """``folder/model.yaml`` and ``folder/last.ckpt`` (``{"state_dict", "global_step"}``, the
    inference weights only, in ``cfg.save_dtype``), each replaced atomically."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    dtype = _SAVE_DTYPES[cfg.save_dtype]
    state = {k: v.detach().to(dtype=dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    buf = io.BytesIO()  # saved from memory: a file's archive name would follow its temp name
    torch.save({"state_dict": state, "global_step": global_step}, buf)
    with replacing(out / "last.ckpt") as tmp:
        tmp.write_bytes(buf.getvalue())
    with replacing(out / "model.yaml") as tmp:
        tmp.write_text(_model_yaml(cfg), encoding="utf-8")
    return out


def _prepare_output(out: Path) -> Path:
    """A fresh folder beside ``out`` to write into; ``out`` may hold only a previous run's
    files, which the new ones replace."""
    if out.exists():
        if not out.is_dir():
            raise InputError(f"output_dir {out} exists and is not a folder")
        other = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if other:
            raise InputError(f"output_dir {out} holds files a VQGAN run does not write "
                             f"({', '.join(other[:3])}); choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.new-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


# ----------------------------------------------------------------------------- training
def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless batches of indices: a fresh permutation each epoch, its tail dropped."""
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def train_vqgan(cfg: VQGANTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train a VQGAN as ``cfg`` says, evaluate it on held-out scenes and write
    ``cfg.output_dir`` (model.yaml, last.ckpt, metrics.json). Returns metrics.json's content
    plus ``train_seconds`` and ``eval_seconds`` (wall clock, left out of the file so that it
    is reproducible byte for byte)."""
    from ..data.shapes import ShapesWorld

    out = Path(cfg.output_dir)
    world = ShapesWorld(seed=cfg.world_seed, image_size=cfg.render_size,
                        max_shapes=cfg.max_shapes)
    tmp = _prepare_output(out)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        metrics, seconds = _train_and_evaluate(cfg, world, tmp, progress)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return {**metrics, **seconds}


def _train_and_evaluate(cfg: VQGANTrainConfig, world: Any, tmp: Path, progress: bool
                        ) -> tuple[dict[str, Any], dict[str, float]]:
    """train_vqgan's work, writing into ``tmp``: (metrics.json's content, wall-clock times)."""
    from ..train.optim import build_optimizer, clip_grad_norm, polynomial_decay_schedule
    from .vqgan_io import load_vqgan

    train_pixels, _ = render_scenes(world, cfg.train_split, cfg.train_scenes, cfg.resolution)
    train_foreground = train_empty = train_scales = None
    if cfg.foreground_weight or cfg.context_weight:
        train_foreground, train_empty = render_foreground(world, cfg.train_split,
                                                          cfg.train_scenes, cfg.resolution)
    if cfg.shape_balance:
        train_scales = shape_scales(train_foreground, cfg.shape_balance)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays as it was
        torch.manual_seed(cfg.seed)
        model = VQGAN(cfg.vqgan_config)
    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    schedule = polynomial_decay_schedule(optimizer, cfg.warmup_steps, cfg.steps, cfg.end_lr)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    usage = torch.zeros(cfg.n_embed, dtype=torch.long) if cfg.quantizer == "vq" else None
    restarted = 0
    batches = _batches(cfg.train_scenes, cfg.batch_size, batch_gen)
    curve: list[dict[str, float]] = []
    window: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, disable=not progress, unit="step", dynamic_ncols=True,
               desc="train-vqgan")
    try:
        for step in range(cfg.steps):
            rows = next(batches)
            x = pixels_to_input(train_pixels[rows])
            foreground = empty = scales = None
            if train_foreground is not None:
                foreground = train_foreground[rows]
                empty = pixels_to_input(train_empty[rows]) if cfg.context_weight else None
            if train_scales is not None:
                scales = train_scales[rows]
            loss, parts = training_loss(model, x, cfg, step, noise_gen, usage, foreground, empty,
                                        scales)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm(model.parameters(), cfg.clip_norm)
            optimizer.step()
            schedule.step()
            if usage is not None and cfg.restart_interval and \
                    (step + 1) % cfg.restart_interval == 0 and step + 1 <= cfg.restart_steps:
                restarted += restart_dead_codes(model, x, usage, noise_gen)
                usage.zero_()
            for k, v in parts.items():
                window[k] = window.get(k, 0.0) + v
            if (step + 1) % cfg.log_interval == 0 or step + 1 == cfg.steps:
                n = (step % cfg.log_interval) + 1
                curve.append({"step": step + 1,
                              **{k: round(v / n, 6) for k, v in window.items()}})
                window = {}
            bar.update(1)
            bar.set_postfix(l1=f"{parts['l1']:.4f}")
    finally:
        bar.close()
    train_seconds = time.perf_counter() - t0
    write_taming_folder(model, cfg, tmp, cfg.steps)
    del train_pixels
    t1 = time.perf_counter()
    # evaluate what was written: the file's weights, in its dtype, loaded as users load it
    trained = load_vqgan(tmp)
    test_pixels, captions = render_scenes(world, cfg.test_split, cfg.test_scenes,
                                          cfg.resolution)
    evaluation = evaluate_vqgan(trained, test_pixels, captions, cfg.eval_batch_size)
    eval_seconds = time.perf_counter() - t1
    size = (tmp / "last.ckpt").stat().st_size
    metrics = {
        "resolution": cfg.resolution, "grid": cfg.vqgan_config.grid_size,
        "n_embed": cfg.n_embed, "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint_bytes": size, "steps": cfg.steps, "test_split": cfg.test_split,
        "test_scenes": cfg.test_scenes, **evaluation, "train_loss": curve,
        "codes_restarted": restarted,
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": cfg.threads,
        # where the files went does not change them: the folder is left out
        "config": {k: v for k, v in cfg.to_dict().items() if k != "output_dir"},
    }
    text = json.dumps(metrics, indent=1) + "\n"
    (tmp / "metrics.json").write_text(text, encoding="utf-8")
    return metrics, {"train_seconds": round(train_seconds, 1),
                     "eval_seconds": round(eval_seconds, 1)}
