"""Loading OFA checkpoints in every published layout, and the native format.

Layouts (detected automatically):

* ``fairseq``: official ``.pt`` files; state dict under ``model``, optional EMA weights under
  ``extra_state.ema``, training config under ``cfg`` (OmegaConf) or ``args`` (Namespace).
* ``hf``: the HF-transformers port; a folder with ``config.json`` and ``pytorch_model.bin`` or
  ``model.safetensors`` (plus ``vocab.json``/``merges.txt``).
* ``mmpretrain``: converted ``.pth`` files, keys ``model.encoder...`` (maybe under ``state_dict``).
* ``native``: this project's folder: ``config.json``, ``model.safetensors``, tokenizer files
  and, for a model that answers from a closed list, ``answers.txt`` (one answer per line).
  Format 2 may store only some rows of the token embedding (``encoder.embed_tokens.rows``
  names them; the others load as zeros): a model that reads and writes few of the 59,457
  tokens, such as a drawing model that only reads short captions and writes 512 image codes.

Every layout is renamed to the official fairseq key names, which ``OFAModel`` uses. The size is
inferred from tensor shapes. Derived buffers (relative-position buckets, the decoder's image
position ids) are dropped and rebuilt by the model, never loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, InputError
from .model import PRESETS, OFAConfig, OFAModel
from .model.config import SHAPE_FIELDS
from .safe_unpickle import load_pickled_checkpoint, to_plain

NATIVE_FORMAT_VERSION = 2  # 2: the token embedding may be stored by rows (EMBEDDING_ROWS)
NATIVE_WEIGHTS = "model.safetensors"
CONFIG_FILE = "config.json"
ANSWERS_FILE = "answers.txt"  # a native folder's VQA answer list, when it has one
_MAX_ANSWERS_BYTES = 16 << 20  # the official VQAv2 list (3,129 answers) is about 30 kB
FORMATS = ("native", "hf", "fairseq", "mmpretrain")
_MAX_JSON_BYTES = 16 << 20  # config files are a few kB; a larger one is not a config
_MAX_IMAGE_SIZE = 4096  # a native folder's training resolution (the released models: <= 512)

# ---------------------------------------------------------------- key layouts
_MM_TOP = {  # mmpretrain name -> official name (after the "model." prefix)
    "encoder.embed_type.": "encoder.type_embedding.",
    "encoder.embedding_ln.": "encoder.layernorm_embedding.",
    "encoder.image_embedding_ln.": "encoder.patch_layernorm_embedding.",
    "encoder.final_ln.": "encoder.layer_norm.",
    "decoder.embedding_ln.": "decoder.layernorm_embedding.",
    "decoder.code_embedding_ln.": "decoder.code_layernorm_embedding.",
    "decoder.final_ln.": "decoder.layer_norm.",
}
_MM_LAYER = {
    "encoder": {"attn": "self_attn", "attn_ln": "self_attn_layer_norm", "attn_mid_ln": "attn_ln",
                "ffn_mid_ln": "ffn_layernorm", "ffn_ln": "final_layer_norm"},
    "decoder": {"self_attn_ln": "self_attn_layer_norm", "self_attn_mid_ln": "self_attn_ln",
                "cross_attn": "encoder_attn", "cross_attn_ln": "encoder_attn_layer_norm",
                "cross_attn_mid_ln": "cross_attn_ln", "ffn_mid_ln": "ffn_layernorm",
                "ffn_ln": "final_layer_norm"},
}
_HF_LAYER = {
    "encoder": {"self_attn_mid_layer_norm": "attn_ln", "ffn_layer_norm": "ffn_layernorm"},
    "decoder": {"self_attn_mid_layer_norm": "self_attn_ln", "cross_attn": "encoder_attn",
                "cross_attn_layer_norm": "encoder_attn_layer_norm",
                "cross_attn_mid_layer_norm": "cross_attn_ln", "ffn_layer_norm": "ffn_layernorm"},
}
_LAYER_KEY = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.([^.]+)\.(.+)$")
_DERIVED = re.compile(r"(^|\.)(token_rp_bucket|image_rp_bucket|image_position_idx|version)$")
_TIED = ("decoder.embed_tokens.weight", "decoder.output_projection.weight")
_CANONICAL_EMBED = "encoder.embed_tokens.weight"
EMBEDDING_ROWS = "encoder.embed_tokens.rows"  # format 2: the ids of the stored embedding rows


def _rename_layer(key: str, table: dict[str, dict[str, str]]) -> str | None:
    m = _LAYER_KEY.match(key)
    if m is None:
        return None
    side, idx, sub, rest = m.groups()
    return f"{side}.layers.{idx}.{table[side].get(sub, sub)}.{rest}"


def mmpretrain_key_to_official(key: str) -> str:
    k = key.removeprefix("model.")
    renamed = _rename_layer(k, _MM_LAYER)
    if renamed is not None:
        return renamed
    for mm, official in _MM_TOP.items():
        if k.startswith(mm):
            return official + k[len(mm):]
    return k


def hf_key_to_official(key: str) -> str:
    renamed = _rename_layer(key, _HF_LAYER)
    return key if renamed is None else renamed


def detect_layout(keys: set[str]) -> str:
    """'fairseq', 'hf' or 'mmpretrain' from the key names of a state dict."""
    if any(k.startswith("model.encoder.") for k in keys) and (
            "model.encoder.embed_type.weight" in keys or
            any(".attn_mid_ln." in k or ".ffn_mid_ln." in k for k in keys)):
        return "mmpretrain"
    if any(".self_attn_mid_layer_norm." in k or ".ffn_layer_norm." in k for k in keys):
        return "hf"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "fairseq"
    sample = ", ".join(sorted(keys)[:5])
    raise CheckpointError(f"not an OFA state dict: no encoder/decoder keys (first keys: {sample})")


def to_official_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename a state dict of any layout to official names; drop derived buffers and ties."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith(("encoder.", "decoder.")) for k in state) and all(
            k.startswith("model.") for k in state):
        stripped = {k.removeprefix("model."): v for k, v in state.items()}
        if detect_layout(set(stripped)) == "hf":  # an HF model saved from a wrapper
            state = stripped
    layout = detect_layout(set(state))
    rename = {"mmpretrain": mmpretrain_key_to_official, "hf": hf_key_to_official,
              "fairseq": lambda k: k}[layout]
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        name = rename(k)
        if _DERIVED.search(name):
            continue
        _check_backed(name, v)
        out[name] = v
    embed = out.get(_CANONICAL_EMBED)
    for tied in _TIED:
        t = out.pop(tied, None)
        if t is None:
            continue
        if embed is None:
            out[_CANONICAL_EMBED] = embed = t
        elif t.shape != embed.shape or not torch.equal(t, embed):
            raise CheckpointError(f"{tied} differs from {_CANONICAL_EMBED}; OFA shares one "
                                  "token embedding for encoder, decoder and output")
    return out, layout


def _check_backed(name: str, t: torch.Tensor) -> None:
    """A pickle can rebuild a view with stride 0 that shows a one-element storage as billions
    of elements; comparing or copying it would take hours. Real weights hold their data."""
    if t.layout != torch.strided:
        raise CheckpointError(f"tensor {name} is not a dense tensor ({t.layout})")
    if t.numel() * t.element_size() > t.untyped_storage().nbytes():
        raise CheckpointError(f"tensor {name} of shape {tuple(t.shape)} has more elements than "
                              f"its data holds: the file is damaged")


# ---------------------------------------------------------------- config from shapes
Shapes = Mapping[str, tuple[int, ...]]

# Where each size shows in an official-named state dict: (key, axis) pairs that must agree.
# When one tensor disagrees with the others, it is named as damaged, instead of sizing the
# model after it (and then blaming every right tensor for not fitting that size).
_SIZE_SOURCES: dict[str, tuple[tuple[str, int], ...]] = {
    "d_model": ((_CANONICAL_EMBED, 1), ("encoder.layer_norm.weight", 0),
                ("decoder.layer_norm.weight", 0), ("encoder.layernorm_embedding.weight", 0),
                ("encoder.embed_positions.weight", 1), ("decoder.embed_positions.weight", 1)),
    "vocab_size": ((_CANONICAL_EMBED, 0),),
    "attention_heads": (("encoder.layers.0.self_attn.c_attn", 0),
                        ("decoder.layers.0.self_attn.c_attn", 0),
                        ("encoder.token_rel_pos_table_list.0.weight", 1)),
    "attention width": (("encoder.layers.0.self_attn.q_proj.weight", 0),
                        ("encoder.layers.0.self_attn.k_proj.weight", 0),
                        ("encoder.layers.0.self_attn.v_proj.weight", 0)),
    "ffn_dim": (("encoder.layers.0.fc1.weight", 0), ("encoder.layers.0.fc2.weight", 1),
                ("encoder.layers.0.ffn_layernorm.weight", 0)),
    "resnet_width": (("encoder.embed_images.conv1.weight", 0),
                     ("encoder.embed_images.bn1.weight", 0)),
    "encoder positions": (("encoder.embed_positions.weight", 0),),
    "decoder positions": (("decoder.embed_positions.weight", 0),),
    "text buckets": (("encoder.token_rel_pos_table_list.0.weight", 0),
                     ("decoder.token_rel_pos_table_list.0.weight", 0)),
    "image positions": (("encoder.embed_image_positions.weight", 0),
                        ("decoder.embed_image_positions.weight", 0)),
}


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape, from tensors or from shapes already (a safetensors header)."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v)
            for k, v in state.items()}


def _count(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(idx) + 1 if idx else 0


def _size(shapes: Shapes, what: str) -> int:
    """The size ``what`` as every tensor showing it agrees; CheckpointError naming the
    tensors that disagree with the others (or with each other, when there is no majority)."""
    sources = _SIZE_SOURCES[what]
    found = {key: shapes[key] for key, _ in sources if key in shapes}
    if not found:
        raise CheckpointError(f"cannot infer the model size: key {sources[0][0]!r} is missing")
    values = {key: shapes[key][axis] if len(shapes[key]) > axis else None
              for key, axis in sources if key in shapes}
    ranked = Counter(v for v in values.values() if v is not None).most_common(2)
    if len(ranked) == 1 and None not in values.values():
        return ranked[0][0]
    shown = {k: f"{k} {found[k]}" for k in found}
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        value, votes = ranked[0]
        wrong = [shown[k] for k, v in values.items() if v != value]
        raise CheckpointError(f"damaged weights: {'; '.join(wrong)}: the {votes} other tensors "
                              f"that show the {what} give {value}")
    raise CheckpointError(f"damaged weights: {'; '.join(shown.values())} disagree about "
                          f"the {what}")


def infer_config(state: Mapping[str, Any], **overrides) -> OFAConfig:
    """The OFAConfig of an official-named state dict (tensors or shapes), from shapes alone."""
    shapes = _shapes(state)
    heads, width = _size(shapes, "attention_heads"), _size(shapes, "attention width")
    n_img_pos = _size(shapes, "image positions")
    buckets = round(max(n_img_pos - 1, 0) ** 0.5)
    if heads < 1 or width % heads or buckets**2 + 1 != n_img_pos:
        raise CheckpointError(f"damaged weights: {heads} attention heads of width {width}, "
                              f"{n_img_pos} image positions fit no OFA model")
    # at most 6 digits: a key naming layer 10**5000 is unexpected, not a size to build
    resnet = tuple(_count(shapes, rf"^encoder\.embed_images\.layer{i}\.(\d{{1,6}})\.")
                   for i in (1, 2, 3))
    cfg = dict(
        d_model=_size(shapes, "d_model"), vocab_size=_size(shapes, "vocab_size"),
        attention_heads=heads, head_dim=width // heads,
        encoder_layers=_count(shapes, r"^encoder\.layers\.(\d{1,6})\."),
        decoder_layers=_count(shapes, r"^decoder\.layers\.(\d{1,6})\."),
        ffn_dim=_size(shapes, "ffn_dim"), resnet_layers=resnet,
        resnet_width=_size(shapes, "resnet_width"),
        max_source_positions=_size(shapes, "encoder positions") - 2,
        max_target_positions=_size(shapes, "decoder positions") - 2,
        token_bucket_size=(_size(shapes, "text buckets") + 1) // 2,
        image_bucket_size=buckets,
    )
    cfg.update(overrides)
    try:
        config = OFAConfig(**cfg)
    except InputError as e:
        raise CheckpointError(f"the tensor shapes describe no usable model: {e}") from None
    config.name = preset_name(config)
    return config


def expected_shapes(config: OFAConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every weight a model of ``config`` loads, without allocating it."""
    with torch.device("meta"):
        model = OFAModel(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in _TIED}


def _problems(expected: Shapes, found: Shapes) -> list[str]:
    """What keeps weights of shapes ``found`` from loading into ``expected``, by kind."""
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(found) - optional)
    unexpected = sorted(set(found) - set(expected))
    mismatched = [f"{k}: checkpoint {found[k]} vs model {expected[k]}"
                  for k in sorted(set(found) & set(expected)) if found[k] != expected[k]]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            shown = "; ".join(items[:5]) + (f"; ... ({len(items) - 5} more)"
                                             if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    return problems


def check_fits(config: OFAConfig, state: Mapping[str, Any], where: str = "checkpoint") -> None:
    """CheckpointError unless weights of these shapes (tensors, or shapes from a file header)
    load into a model of ``config``; decided on the meta device, before any allocation."""
    found = _shapes(state)
    problems = _problems(expected_shapes(config), found)
    if problems:
        raise CheckpointError(_misfit_message(config, found, problems, where))


def _misfit_message(config: OFAConfig, found: Shapes, problems: list[str], where: str) -> str:
    """Why the weights do not fit: another whole model, or named damaged tensors."""
    try:
        own = infer_config(found)
    except CheckpointError as e:  # tensors that disagree among themselves: they are named
        return f"{where}: {e}. Against {describe(config)}: " + " | ".join(problems)
    if own != config and not _problems(expected_shapes(own), found):
        fields = [f for f in ("head_dim", *SHAPE_FIELDS) if getattr(own, f) != getattr(config, f)]
        weights = ", ".join(f"{f} {getattr(own, f)}" for f in fields)
        declared = ", ".join(f"{f} {getattr(config, f)}" for f in fields)
        return (f"{where}: the weights are a whole model of another size ({weights}) than "
                f"the config says ({declared}). " + " | ".join(problems))
    return f"{where} does not fit {describe(config)}: " + " | ".join(problems)


def preset_name(config: OFAConfig) -> str | None:
    """The released size a config matches ('tiny' ... 'huge'), or None for a custom one."""
    arch = ("d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim",
            "head_dim", "resnet_layers", "resnet_width")
    for name, p in PRESETS.items():
        if all(getattr(p, a) == getattr(config, a) for a in arch):
            return name
    return None


def describe(config: OFAConfig) -> str:
    size = f"ofa-{config.name}" if config.name else "a custom size"
    return (f"{size} (d_model {config.d_model}, {config.encoder_layers}+{config.decoder_layers}"
            f" layers, {config.attention_heads} heads, ResNet blocks {list(config.resnet_layers)})")


# ---------------------------------------------------------------- reading each format
@dataclass
class Checkpoint:
    """Weights in official key names plus what was learned about them."""

    config: OFAConfig
    state_dict: dict[str, torch.Tensor]
    format: str
    path: Path
    used_ema: bool = False
    tokenizer_dir: Path | None = None  # a folder with tokenizer files, when the source has one
    meta: dict = field(default_factory=dict)


def detect_format(path: str | os.PathLike[str]) -> str:
    """'native', 'hf', 'fairseq' or 'mmpretrain' (the last two are told apart by content)."""
    return _format_and_object(Path(path))[0]


def _format_and_object(p: Path) -> tuple[str, object]:
    """The format, and for a single pickled file its loaded object (read once, not twice)."""
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        cfg_file = p / CONFIG_FILE
        if not cfg_file.is_file():
            raise CheckpointError(f"{p} is a folder without {CONFIG_FILE}: expected an ofa "
                                  "native folder or an HF-port folder")
        cfg = _read_json(cfg_file)
        return ("native" if "ofa_format" in cfg else "hf"), None
    if p.suffix == ".safetensors":
        return "hf", None
    obj = load_pickled_checkpoint(p)
    return _pickled_format(obj, p), obj


def _pickled_format(obj: object, path: Path) -> str:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], dict):
        return "fairseq"
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return "mmpretrain" if detect_layout(set(obj["state_dict"])) == "mmpretrain" else "fairseq"
    return "mmpretrain" if detect_layout(set(obj)) == "mmpretrain" else "fairseq"


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; one CheckpointError line for anything else."""
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise CheckpointError(f"cannot read {path}: {path.stat().st_size:,} bytes is too "
                                  "large for a config file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = str(e).strip() or type(e).__name__  # ValueError covers JSONDecodeError
        raise CheckpointError(f"cannot read {path}: not valid JSON ({detail})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"cannot read {path}: expected a JSON object, found a "
                              f"{type(data).__name__}")
    return data


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: damaged safetensors file ({e})") from None


def read_weights_file(path: str | os.PathLike[str]) -> Any:
    """What a weights file holds: a ``.safetensors`` file's tensors, or a pickled checkpoint
    read without running code; a Lightning ``{"state_dict": ...}`` is unwrapped."""
    p = Path(path)
    obj = _load_safetensors(p) if p.suffix == ".safetensors" else load_pickled_checkpoint(p)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return obj


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, reading no tensor data."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: damaged safetensors file ({e})") from None


def _read_native(folder: Path) -> tuple[OFAConfig, dict[str, torch.Tensor], dict]:
    """A native folder's config (checked field by field), weights (checked against the
    config by their header before any data is read) and ``source`` record."""
    cfg_file = folder / CONFIG_FILE
    cfg_json = _read_json(cfg_file)
    version = cfg_json.get("ofa_format")
    if type(version) is not int or not 1 <= version <= NATIVE_FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file}: ofa_format {version!r} is not a native format this "
                              f"version reads (1 to {NATIVE_FORMAT_VERSION})")
    if "model" not in cfg_json:
        raise CheckpointError(f"{cfg_file}: no \"model\" section")
    try:
        config = OFAConfig.from_dict(cfg_json["model"])
    except (InputError, TypeError) as e:
        raise CheckpointError(f"{cfg_file}: invalid model config: {e}") from None
    source = _checked_source(cfg_json.get("source", {}), cfg_file)
    weights = folder / NATIVE_WEIGHTS
    shapes = _safetensors_shapes(weights)
    rows = shapes.pop(EMBEDDING_ROWS, None)
    if rows is not None:  # stored by rows: it must hold one row per id it names
        if len(rows) != 1 or shapes.get(_CANONICAL_EMBED, (None,))[0] != rows[0]:
            raise CheckpointError(f"{weights}: {EMBEDDING_ROWS} {rows} does not name one id "
                                  f"per row of {_CANONICAL_EMBED} "
                                  f"{shapes.get(_CANONICAL_EMBED)}")
        shapes[_CANONICAL_EMBED] = (config.vocab_size, *shapes[_CANONICAL_EMBED][1:])
    check_fits(config, shapes, str(weights))
    state = _load_safetensors(weights)
    if rows is not None:
        state[_CANONICAL_EMBED] = _embedding_from_rows(state, config.vocab_size, weights)
    return config, state, source


def _embedding_from_rows(state: dict[str, torch.Tensor], vocab_size: int,
                         where: Path) -> torch.Tensor:
    """The full token embedding of a format-2 file: its stored rows, zeros elsewhere."""
    ids, stored = state.pop(EMBEDDING_ROWS), state[_CANONICAL_EMBED]
    if (ids.dtype != torch.int64 or ids.numel() != ids.unique().numel()
            or (ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < vocab_size)):
        raise CheckpointError(f"{where}: {EMBEDDING_ROWS} must hold distinct int64 ids below "
                              f"{vocab_size}")
    full = stored.new_zeros(vocab_size, stored.shape[1])
    full[ids] = stored
    return full


def _checked_source(source: Any, cfg_file: Path) -> dict:
    """The ``source`` record of a native config, with the fields that steer loading checked."""
    if not isinstance(source, dict):
        raise CheckpointError(f"{cfg_file}: \"source\" must be an object, found "
                              f"{type(source).__name__}")
    size = source.get("image_size")
    if size is not None and (type(size) is not int or not 1 <= size <= _MAX_IMAGE_SIZE):
        raise CheckpointError(f"{cfg_file}: source.image_size must be an integer between 1 "
                              f"and {_MAX_IMAGE_SIZE}, got {size!r}")
    for name in ("task", "registry_name"):
        if source.get(name) is not None and not isinstance(source[name], str):
            raise CheckpointError(f"{cfg_file}: source.{name} must be a string, got "
                                  f"{source[name]!r}")
    return source


def _select_weights(obj: dict, path: Path, ema: bool | None) -> tuple[dict, bool]:
    """The fairseq model dict, or its EMA copy: EMA when present unless ema=False."""
    extra = obj.get("extra_state") if isinstance(obj.get("extra_state"), dict) else {}
    ema_sd = extra.get("ema") if isinstance(extra.get("ema"), dict) else None
    if ema is True and ema_sd is None:
        raise CheckpointError(f"{path} has no EMA weights (extra_state.ema); load it without "
                              "--ema to use its regular weights")
    if ema_sd is not None and ema is not False:
        ema_sd = dict(ema_sd)
        fp32 = extra.get("ema_fp32_params")
        if isinstance(fp32, dict):  # full-precision master copy of the EMA parameters
            ema_sd.update({k: v for k, v in fp32.items() if k in ema_sd})
        return ema_sd, True
    if "model" in obj:
        return obj["model"], False
    return (obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj), False


def _fairseq_overrides(obj: dict, path: Path) -> dict:
    """Config fields the training config knows but tensor shapes do not."""
    where = f"{path}: training configuration"
    cfg = to_plain(obj.get("cfg"), where) if obj.get("cfg") is not None else None
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict) and obj.get("args") is not None:
        model_cfg = to_plain(obj["args"], where)
    task_cfg = cfg.get("task") if isinstance(cfg, dict) else None
    # legacy (argparse) models keep every argument in cfg.model; the task's own fields
    # (orig_patch_image_size) may sit only in cfg.task
    merged = {**(task_cfg if isinstance(task_cfg, dict) else {}),
              **(model_cfg if isinstance(model_cfg, dict) else {})}
    out = {}
    for name, kind in (("code_image_size", int), ("interpolate_position", bool),
                       ("orig_patch_image_size", int)):
        if isinstance(merged.get(name), kind):
            out[name] = merged[name]
    return out


def read_checkpoint(path: str | os.PathLike[str], ema: bool | None = None) -> Checkpoint:
    """Read any supported checkpoint into official key names (no model is built yet)."""
    p = Path(path)
    fmt, obj = _format_and_object(p)
    overrides: dict = {}
    used_ema = False
    tok_dir: Path | None = None
    meta: dict = {}
    if fmt == "native":
        config, state, meta = _read_native(p)
        tok_dir = p
    elif fmt == "hf":
        folder = p if p.is_dir() else p.parent
        weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin")
                        if (folder / n).is_file()), None) if p.is_dir() else p
        if weights is None:
            raise CheckpointError(f"{folder} holds no model.safetensors or pytorch_model.bin")
        if weights.suffix == ".safetensors":
            state = _load_safetensors(weights)
        else:
            if obj is None:  # a folder: its pytorch_model.bin
                obj = load_pickled_checkpoint(weights)
            if not isinstance(obj, dict):
                raise CheckpointError(f"{weights}: expected a state dict")
            state = obj
        tok_dir = folder
    else:
        assert isinstance(obj, dict)  # _pickled_format checked it
        state, used_ema = _select_weights(obj, p, ema)
        if fmt == "fairseq":
            overrides = _fairseq_overrides(obj, p)
        tok_dir = p.parent
    if ema is True and fmt != "fairseq":
        raise CheckpointError(f"{p} is a {fmt} checkpoint: EMA weights exist only in official "
                              "fairseq .pt files")
    try:
        state, layout = to_official_keys(state)
        if fmt != "native":
            config = infer_config(state, **overrides)
    except CheckpointError as e:
        raise CheckpointError(f"{p}: {e}") from None
    meta = {"format": fmt, "layout": layout, "file": p.name, "ema": used_ema, **meta}
    return Checkpoint(config, state, fmt, p, used_ema, tok_dir, meta)


# ---------------------------------------------------------------- into a model
def load_weights(model: OFAModel, state: dict[str, torch.Tensor]) -> None:
    """Copy official-named weights into ``model``; one clear error for any mismatch."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in _TIED}
    found = _shapes(state)
    problems = _problems(expected, found)
    if problems:
        raise CheckpointError(_misfit_message(model.config, found, problems, "checkpoint"))
    with torch.no_grad():
        # copied, never adopted: a model must not depend on a file the user may overwrite
        for k, v in model.state_dict().items():
            if k in state:
                v.copy_(state[k])


def load_model(path: str | os.PathLike[str], *, ema: bool | None = None,
               device: str | torch.device | None = None,
               dtype: torch.dtype | None = None) -> OFAModel:
    """Build the model a checkpoint describes and load its weights, in eval mode."""
    ckpt = read_checkpoint(path, ema=ema)
    return model_from_checkpoint(ckpt, device=device, dtype=dtype)


def model_from_checkpoint(ckpt: Checkpoint, *, device: str | torch.device | None = None,
                          dtype: torch.dtype | None = None) -> OFAModel:
    # the weights must fit before the model's memory is allocated: a config that disagrees
    # with them could otherwise ask for far more memory than the file holds
    check_fits(ckpt.config, ckpt.state_dict, str(ckpt.path))
    with torch.device("meta"):
        model = OFAModel(ckpt.config)
    model = model.to_empty(device="cpu")
    if dtype is not None:  # weights are cast as they are copied in: no full-precision copy
        model = model.to(dtype=dtype)
    model.rebuild_buffers()  # built from the config, so to_empty left them undefined
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            v.zero_()
    load_weights(model, ckpt.state_dict)
    model.eval()
    return model.to(device=device, dtype=dtype)


# ---------------------------------------------------------------- native format
def model_answers(folder: str | os.PathLike[str]) -> list[str] | None:
    """The VQA answer list a native folder carries (``answers.txt``: one per line, blank
    lines skipped), or None when it has none (a file, or a folder without the list)."""
    path = Path(folder) / ANSWERS_FILE
    if not Path(folder).is_dir() or not path.is_file():
        return None
    from .data.answer_lists import read_lines

    if path.stat().st_size > _MAX_ANSWERS_BYTES:
        raise CheckpointError(f"cannot read {path}: {path.stat().st_size:,} bytes is too "
                              "large for an answer list")
    try:
        return read_lines(path, "answer list")
    except InputError as e:  # the folder's file, not the user's input, is at fault
        raise CheckpointError(str(e)) from None


def save_native(model: OFAModel, out_dir: str | os.PathLike[str], tokenizer=None,
                source: dict | None = None, answers: list[str] | None = None,
                embedding_rows: list[int] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files, + ``answers.txt``
    when ``answers`` is given) atomically. ``embedding_rows``: keep only these rows of the
    token embedding (format 2; the others load as zeros), for a model that never reads or
    writes the other tokens."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not empty; choose a new folder")
    if answers is not None:
        # one line each, read back as written (model_answers strips lines)
        bad = [a for a in answers if not isinstance(a, str) or not a or a != a.strip()
               or len(a.splitlines()) != 1]
        if bad or not answers:
            raise InputError(f"answers must be non-empty one-line strings without surrounding "
                             f"spaces; got {bad[0]!r}" if bad else "answers must not be empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                 if k not in _TIED and not k.endswith("num_batches_tracked")}
        if embedding_rows is not None:
            ids = torch.tensor(sorted(set(embedding_rows)), dtype=torch.int64)
            if ids.numel() == 0 or ids[0] < 0 or ids[-1] >= model.config.vocab_size:
                raise InputError(f"embedding_rows must name ids in [0, "
                                 f"{model.config.vocab_size})")
            state[_CANONICAL_EMBED] = state[_CANONICAL_EMBED][ids].contiguous()
            state[EMBEDDING_ROWS] = ids
        save_file(state, str(tmp / NATIVE_WEIGHTS), metadata={"format": "pt"})
        # format 1 unless rows are dropped: a file older readers can read stays readable
        cfg = {"ofa_format": 1 if embedding_rows is None else NATIVE_FORMAT_VERSION,
               "model": model.config.to_dict(),
               "source": source or {}}
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(tmp)
        if answers is not None:
            (tmp / ANSWERS_FILE).write_text("".join(a + "\n" for a in answers),
                                            encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
