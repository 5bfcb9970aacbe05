"""VQGAN files and pixels: checkpoints in their published layouts, OFA's token ids, images.

* taming-transformers (CompVis/taming-transformers README, e.g. ``vqgan_gumbel_f8``):
  ``checkpoints/last.ckpt`` (a PyTorch-Lightning checkpoint, weights under ``state_dict``)
  and ``configs/model.yaml`` (``model: {target, params: {embed_dim, n_embed, ddconfig}}``);
* OFA's text-to-image release (``image_gen_*_best.zip``): a ``vqgan/`` folder with
  ``last.ckpt`` and ``model.yaml``, next to ``clip/``; OFA-Sys/OFA tasks/mm_tasks/image_gen.py
  builds ``GumbelVQ(**config.model.params)`` from them;
* ModelScope's OFA text-to-image model: ``vqgan_model.ckpt`` and ``vqgan_config.json``, the
  same config as JSON (modelscope/modelscope
  modelscope/models/multi_modal/ofa_for_text_to_image_synthesis_model.py::load_vqgan).

``.ckpt`` files are pickles: they are read with :func:`ofa.safe_unpickle.load_pickled_checkpoint`,
which runs no code from the file. Training-only tensors (``loss.*``: LPIPS, discriminator) are
dropped by prefix, then the weights must match the model exactly: upstream loads with
``strict=False``, which would hide a wrong config.

Pixels go in through :func:`preprocess` and come out through :func:`to_uint8` / :func:`to_pil`,
both as OFA does it; :func:`tokens_to_codes` maps OFA's generated token ids to codes.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from ..boxes import code_from_token_id
from ..checkpoints import read_weights_file
from ..errors import CheckpointError, InputError
from ..preprocess import ImageInput, load_image
from .vqgan import VQGAN, VQGANConfig

__all__ = ["MODEL_PREFIXES", "find_vqgan_files", "infer_vqgan_config",
           "load_vqgan", "load_vqgan_weights", "preprocess", "read_vqgan_config",
           "read_vqgan_state_dict", "to_pil", "to_uint8", "tokens_to_codes"]

# GumbelVQ's submodules; anything else in a Lightning state dict is training state
MODEL_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
_CKPT_NAMES = ("last.ckpt", "checkpoints/last.ckpt", "vqgan_model.ckpt", "model.ckpt")
_MAX_CONFIG_BYTES = 1 << 20  # taming's model.yaml is under 1 kB


def find_vqgan_files(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(checkpoint, config or None) for a checkpoint file or a folder in a known layout.

    A folder may be the one holding the files (``last.ckpt``, ``vqgan_model.ckpt``), a taming
    release folder (``checkpoints/`` + ``configs/``) or OFA's image_gen release (``vqgan/``).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"VQGAN checkpoint not found: {p}")
    if p.is_dir():
        found = [p / name for folder in ("", "vqgan/") for name in
                 (folder + n for n in _CKPT_NAMES) if (p / name).is_file()]
        if not found:
            raise CheckpointError(f"{p}: no VQGAN checkpoint in it (looked for "
                                  f"{', '.join(_CKPT_NAMES)}, also under vqgan/)")
        p = found[0]
    here = p.parent
    configs = [p.with_suffix(".yaml"), here / "model.yaml", here / "vqgan_config.json",
               here / "config.yaml", here.parent / "configs" / "model.yaml"]
    return p, next((c for c in configs if c.is_file()), None)


def _read_config_file(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise CheckpointError(f"cannot read {path}: {size:,} bytes is too large for a "
                                  "VQGAN config")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"cannot read {path}: not valid JSON ({e})") from None
    import yaml

    try:
        return yaml.safe_load(text)  # safe_load: a config file builds plain data only
    except (yaml.YAMLError, RecursionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {path}: not valid YAML ({first})") from None


def _quantizer_of(target: Any) -> str | None:
    """'gumbel' / 'vq' from a taming ``target`` (``taming.models.vqgan.GumbelVQ``, OFA's
    ``models.taming.models.vqgan.GumbelVQ``, ...); None when it names neither."""
    name = str(target).rsplit(".", 1)[-1] if target else ""
    return {"GumbelVQ": "gumbel", "VQModel": "vq", "VQNoDiscModel": "vq"}.get(name)


def read_vqgan_config(path: str | os.PathLike[str], state: Mapping[str, Any] | None = None
                      ) -> VQGANConfig:
    """A taming ``model.yaml`` / ModelScope ``vqgan_config.json`` -> :class:`VQGANConfig`.

    Accepts ``{model: {target, params}}``, ``{target, params}`` or the bare params. Without a
    recognised ``target`` the quantizer follows the weights in ``state`` when given.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"VQGAN config not found: {p}")
    data = _read_config_file(p)
    node = data.get("model", data) if isinstance(data, dict) else data
    if not isinstance(node, dict):
        raise CheckpointError(f"{p}: expected a taming VQGAN config (model: {{target, params}}),"
                              f" found {type(node).__name__}")
    params = node.get("params", node)
    quantizer = _quantizer_of(node.get("target"))
    if node.get("target") and quantizer is None:
        raise CheckpointError(f"{p}: model {node['target']} is not supported (GumbelVQ or "
                              "VQModel are)")
    if quantizer is None:
        quantizer = "vq" if state is not None and "quantize.embedding.weight" in state \
            else "gumbel"
    try:
        return VQGANConfig.from_taming(params, quantizer)
    except InputError as e:
        raise CheckpointError(f"{p}: {e}") from None


def read_vqgan_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint (Lightning ``{"state_dict": ...}``, a plain state dict
    or ``.safetensors``), training-only entries dropped. Runs no code from the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"VQGAN checkpoint not found: {p}")
    obj = read_weights_file(p)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a checkpoint dict, found {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and k.startswith(MODEL_PREFIXES)}
    if not state:
        raise CheckpointError(f"{p}: holds no VQGAN weights (no keys starting with "
                              f"{', '.join(MODEL_PREFIXES)})")
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{p}: {bad} is a {type(state[bad]).__name__}, not a tensor")
    return state


def _shape(state: Mapping[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"missing {key}")
    shape = tuple(state[key].shape)
    if len(shape) != dims:
        raise CheckpointError(f"{key} has shape {shape}, expected {dims} dimensions")
    return shape


def infer_vqgan_config(state: Mapping[str, torch.Tensor]) -> VQGANConfig:
    """The architecture a state dict was trained with, read from tensor shapes.

    Everything is determined by the weights except ``resolution``, which only says where the
    attention levels are: it is set to 256, and ``attn_resolutions`` to the matching sizes, which
    builds the same network as the original config.
    """
    quantizer = "vq" if "quantize.embedding.weight" in state else "gumbel"
    n_embed, embed_dim = _shape(state, "quantize.embedding.weight" if quantizer == "vq"
                                else "quantize.embed.weight", 2)
    ch, in_channels = _shape(state, "encoder.conv_in.weight", 4)[:2]
    levels = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    if not levels or levels != list(range(len(levels))) or len(levels) > 8:
        raise CheckpointError(f"encoder levels {levels} are not 0..n-1 (n <= 8)")
    ch_mult = tuple(_shape(state, f"encoder.down.{i}.block.0.conv1.weight", 4)[0] // ch
                    for i in levels)
    num_res_blocks = len({k.split(".")[4] for k in state
                          if k.startswith("encoder.down.0.block.")})
    resolution = max(256, 2 ** (len(levels) - 1))
    attn = tuple(resolution // 2 ** i for i in levels
                 if f"encoder.down.{i}.attn.0.q.weight" in state)
    try:
        return VQGANConfig(
            ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn,
            resolution=resolution, in_channels=in_channels,
            out_ch=_shape(state, "decoder.conv_out.weight", 4)[0],
            z_channels=_shape(state, "decoder.conv_in.weight", 4)[1], embed_dim=embed_dim,
            n_embed=n_embed, quantizer=quantizer)  # type: ignore[arg-type]
    except InputError as e:
        raise CheckpointError(str(e)) from None


def _check_weights(model_shapes: Mapping[str, tuple[int, ...]],
                   state: Mapping[str, torch.Tensor], where: str) -> None:
    missing = [k for k in model_shapes if k not in state]
    unexpected = [k for k in state if k not in model_shapes]
    if missing or unexpected:
        parts = [f"{len(missing)} missing (first: {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (first: {unexpected[0]})"] if unexpected else []
        raise CheckpointError(f"{where}: the weights do not fit the VQGAN config: "
                              f"{'; '.join(parts)}")
    for key, shape in model_shapes.items():
        found = tuple(state[key].shape)
        if found != shape:
            raise CheckpointError(f"{where}: {key} has shape {found} in the checkpoint, but the "
                                  f"config needs {shape}")
        if not state[key].is_floating_point():
            raise CheckpointError(f"{where}: {key} is {state[key].dtype}, not floating point")


def load_vqgan_weights(model: VQGAN, state: Mapping[str, torch.Tensor],
                       where: str = "checkpoint") -> None:
    """Copy ``state`` into ``model``: every key present, no other, shapes equal (one-line
    CheckpointError naming the key otherwise)."""
    _check_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, where)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(state[k])  # copied (and cast), never adopted: the file may be mmapped


def load_vqgan(path: str | os.PathLike[str], *,
               config: VQGANConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
               device: str | torch.device | None = None,
               dtype: torch.dtype | None = None) -> VQGAN:
    """A VQGAN in eval mode from a checkpoint file or folder (see the module docstring).

    ``config``: a :class:`VQGANConfig`, taming ``model.params`` as a dict, or a config file;
    by default the ``model.yaml`` / ``vqgan_config.json`` next to the checkpoint. Without
    either, the architecture is inferred from the weights and a warning says so.
    """
    ckpt, found_config = find_vqgan_files(path)
    state = read_vqgan_state_dict(ckpt)
    if isinstance(config, VQGANConfig):
        cfg = config
    elif isinstance(config, Mapping):
        try:
            cfg = VQGANConfig.from_taming(config.get("params", config),
                                          "vq" if "quantize.embedding.weight" in state
                                          else "gumbel")
        except InputError as e:
            raise CheckpointError(f"config for {ckpt}: {e}") from None
    elif config is not None or found_config is not None:
        cfg = read_vqgan_config(config if config is not None else found_config, state)
    else:
        try:
            cfg = infer_vqgan_config(state)
        except CheckpointError as e:
            raise CheckpointError(f"{ckpt}: no config next to it (model.yaml or "
                                  f"vqgan_config.json) and the architecture cannot be read "
                                  f"from the weights: {e}") from None
        known = " (taming's vqgan_gumbel_f8)" if cfg == VQGANConfig() else ""
        warnings.warn(f"{ckpt}: no model.yaml or vqgan_config.json next to it; the VQGAN "
                      f"architecture was inferred from the weights{known}", stacklevel=2)
    # check before allocating: a config that disagrees with the file could ask for any size
    with torch.device("meta"):
        model = VQGAN(cfg)
    _check_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, str(ckpt))
    model = model.to_empty(device="cpu")
    if dtype is not None:
        model = model.to(dtype=dtype)
    load_vqgan_weights(model, state, str(ckpt))
    return model.eval().to(device=device)


_EOS = 2


# ----------------------------------------------------------------------------- pixels
def tokens_to_codes(tokens: Any, grid_size: int = 32) -> torch.Tensor:
    """OFA generator output -> codes [B, grid, grid]: drops a trailing EOS, and code token
    50265 + i is code i (OFA-Sys/OFA tasks/mm_tasks/image_gen.py::inference_image adds
    -len(src_dict) + code_dict_size + num_bins = -50265)."""
    tokens = torch.as_tensor(tokens)
    if tokens.dim() == 1:
        tokens = tokens[None]
    n = grid_size * grid_size
    if tokens.dim() == 2 and tokens.shape[1] == n + 1 and bool((tokens[:, -1] == _EOS).all()):
        tokens = tokens[:, :-1]  # inference_image keeps hyp['tokens'][:-1]
    if tokens.dim() != 2 or tokens.shape[1] != n:
        raise InputError(f"expected {n} image-code tokens per sample (+ EOS), got shape "
                         f"{list(tokens.shape)}")
    return code_from_token_id(tokens.long()).view(-1, grid_size, grid_size)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Decoded images [B, 3, H, W] (or [3, H, W]) -> uint8 [B, H, W, 3] (or [H, W, 3]).

    OFA's ``custom_to_pil`` (OFA-Sys/OFA tasks/mm_tasks/image_gen.py): clamp to [-1, 1],
    ``(x + 1) / 2``, then ``(255 * x).astype(uint8)``, which truncates (rounding would change
    about half the values). Done in float32 in that order, so the levels are the same.
    """
    x = images.detach().float().clamp(-1.0, 1.0)
    x = (x + 1.0) / 2.0
    x = (255 * x).to(torch.uint8)  # float -> uint8 truncates toward zero, like numpy's astype
    return x.movedim(-3, -1).cpu()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Decoded images [B, 3, H, W] -> RGB PIL images (OFA's ``custom_to_pil``)."""
    arrays = to_uint8(images if images.dim() == 4 else images[None]).numpy()
    return [Image.fromarray(a) for a in arrays]  # HxWx3 uint8 is RGB


ResizeMode = Literal["square", "shorter_side", "center_crop"]


def _resize(img: Image.Image, size: int, mode: ResizeMode) -> Image.Image:
    if mode == "square":
        return img.resize((size, size), Image.LANCZOS)
    w, h = img.size
    # torchvision Resize(size) on a PIL image: the shorter side becomes size, the longer one
    # int(size * long / short), resampled with the given filter (here LANCZOS)
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    img = img.resize((nw, nh), Image.LANCZOS)
    if mode == "shorter_side":
        return img
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def preprocess(images: ImageInput | Sequence[ImageInput], size: int = 256,
               resize: ResizeMode = "square") -> torch.Tensor:
    """Images -> the VQGAN's input [B, 3, size, size] float32 in [-1, 1].

    OFA-Sys/OFA run_scripts/image_gen/generate_code.py: RGB, LANCZOS resize, ``ToTensor``, then
    ``2 * x - 1``. Its resize is torchvision ``Resize(size)``, shorter side only
    (``resize="shorter_side"``), which gives more than 32x32 codes for a non-square image
    while OFA's text-to-image data has 1024 codes per image; so the default squashes to
    size x size, and ``"center_crop"`` keeps the aspect. For a square image all three agree.
    """
    if resize not in ("square", "shorter_side", "center_crop"):
        raise InputError(f"resize must be 'square', 'shorter_side' or 'center_crop', got "
                         f"{resize!r}")
    if not isinstance(size, int) or not 0 < size <= 4096:
        raise InputError(f"size must be a positive integer up to 4096, got {size!r}")
    single = isinstance(images, str | bytes | Image.Image | np.ndarray | torch.Tensor) or \
        not isinstance(images, Sequence)
    batch = [_resize(load_image(im), size, resize) for im in ([images] if single else images)]
    if not batch:
        raise InputError("no images given")
    if len({im.size for im in batch}) > 1:
        raise InputError("images of different aspect ratios cannot share a batch with "
                         "resize='shorter_side'")
    x = torch.from_numpy(np.stack([np.asarray(im) for im in batch])).permute(0, 3, 1, 2)
    x = x.float().div(255)  # torchvision ToTensor
    return 2.0 * x - 1.0  # OFA's preprocess_vqgan
