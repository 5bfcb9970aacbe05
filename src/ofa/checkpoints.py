"""Loading OFA checkpoints in every published layout, and the native format.

Layouts (detected automatically, reference section 2):

* ``fairseq``: official ``.pt`` files; state dict under ``model``, optional EMA weights under
  ``extra_state.ema``, training config under ``cfg`` (OmegaConf) or ``args`` (Namespace).
* ``hf``: the HF-transformers port; a folder with ``config.json`` and ``pytorch_model.bin`` or
  ``model.safetensors`` (plus ``vocab.json``/``merges.txt``).
* ``mmpretrain``: converted ``.pth`` files, keys ``model.encoder...`` (maybe under ``state_dict``).
* ``native``: this project's folder: ``config.json``, ``model.safetensors``, tokenizer files.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .model import PRESETS, OFAConfig, OFAModel
from .safe_unpickle import load_pickled_checkpoint, to_plain

NATIVE_FORMAT_VERSION = 1
NATIVE_WEIGHTS = "model.safetensors"
CONFIG_FILE = "config.json"
FORMATS = ("native", "hf", "fairseq", "mmpretrain")

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


# ---------------------------------------------------------------- config from shapes
def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in state if (m := rx.match(k))}
    return max(idx) + 1 if idx else 0


def _shape(state: dict[str, torch.Tensor], key: str) -> torch.Size:
    if key not in state:
        raise CheckpointError(f"cannot infer the model size: key {key!r} is missing")
    return state[key].shape


def infer_config(state: dict[str, torch.Tensor], **overrides) -> OFAConfig:
    """The OFAConfig of an official-named state dict, from tensor shapes alone."""
    vocab, d = _shape(state, _CANONICAL_EMBED)
    heads = _shape(state, "encoder.layers.0.self_attn.c_attn")[0]
    inner = _shape(state, "encoder.layers.0.self_attn.q_proj.weight")[0]
    resnet = tuple(_count(state, rf"^encoder\.embed_images\.layer{i}\.(\d+)\.") for i in (1, 2, 3))
    n_img_pos = _shape(state, "encoder.embed_image_positions.weight")[0]
    cfg = dict(
        d_model=d, vocab_size=vocab, attention_heads=heads, head_dim=inner // heads,
        encoder_layers=_count(state, r"^encoder\.layers\.(\d+)\."),
        decoder_layers=_count(state, r"^decoder\.layers\.(\d+)\."),
        ffn_dim=_shape(state, "encoder.layers.0.fc1.weight")[0],
        resnet_layers=resnet,
        resnet_width=_shape(state, "encoder.embed_images.conv1.weight")[0],
        max_source_positions=_shape(state, "encoder.embed_positions.weight")[0] - 2,
        max_target_positions=_shape(state, "decoder.embed_positions.weight")[0] - 2,
        token_bucket_size=(_shape(state, "encoder.token_rel_pos_table_list.0.weight")[0] + 1) // 2,
        image_bucket_size=round((n_img_pos - 1) ** 0.5),
    )
    cfg.update(overrides)
    config = OFAConfig(**cfg)
    config.name = preset_name(config)
    return config


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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: damaged safetensors file ({e})") from None


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


def _fairseq_overrides(obj: dict) -> dict:
    """Config fields the training config knows but tensor shapes do not."""
    cfg = to_plain(obj.get("cfg")) if obj.get("cfg") is not None else None
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict) and obj.get("args") is not None:
        model_cfg = to_plain(obj["args"])
    out = {}
    if isinstance(model_cfg, dict) and isinstance(model_cfg.get("code_image_size"), int):
        out["code_image_size"] = model_cfg["code_image_size"]
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
        cfg_json = _read_json(p / CONFIG_FILE)
        state = _load_safetensors(p / NATIVE_WEIGHTS)
        tok_dir, meta = p, cfg_json.get("source", {})
        try:
            config = OFAConfig.from_dict(cfg_json["model"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{p / CONFIG_FILE}: invalid model config ({e})") from None
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
            overrides = _fairseq_overrides(obj)
        tok_dir = p.parent
    if ema is True and fmt != "fairseq":
        raise CheckpointError(f"{p} is a {fmt} checkpoint: EMA weights exist only in official "
                              "fairseq .pt files")
    state, layout = to_official_keys(state)
    if fmt != "native":
        config = infer_config(state, **overrides)
    meta = {"format": fmt, "layout": layout, "file": p.name, "ema": used_ema, **meta}
    return Checkpoint(config, state, fmt, p, used_ema, tok_dir, meta)


# ---------------------------------------------------------------- into a model
def load_weights(model: OFAModel, state: dict[str, torch.Tensor]) -> None:
    """Copy official-named weights into ``model``; one clear error for any mismatch."""
    expected = {k: v for k, v in model.state_dict().items() if k not in _TIED}
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected))
                  if state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                shown = "; ".join(items[:5]) + (f"; ... ({len(items) - 5} more)"
                                                 if len(items) > 5 else "")
                problems.append(f"{len(items)} {label}: {shown}")
        try:
            looks = describe(infer_config(state))
        except Exception:  # noqa: BLE001  a damaged dict may not even give a size
            looks = "an unrecognisable model"
        raise CheckpointError(f"checkpoint does not fit {describe(model.config)}; it looks like "
                              f"{looks}. " + " | ".join(problems))
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
def save_native(model: OFAModel, out_dir: str | os.PathLike[str], tokenizer=None,
                source: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) atomically."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                 if k not in _TIED and not k.endswith("num_batches_tracked")}
        save_file(state, str(tmp / NATIVE_WEIGHTS), metadata={"format": "pt"})
        cfg = {"ofa_format": NATIVE_FORMAT_VERSION, "model": model.config.to_dict(),
               "source": source or {}}
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
