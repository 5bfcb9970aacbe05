"""OFAConfig: every size-dependent number of the architecture, with the official presets."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

# Vocabulary layout shared by every released checkpoint: the 50,265 GPT-2 BPE entries of
# fairseq's dict.txt, then 8,192 <code_i> and 1,000 <bin_i> tokens (OFA-Sys/OFA tasks/ofa_task.py).
VOCAB_SIZE = 59457
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# Inclusive bounds of every integer field. The released sizes top out at ofa-huge (d_model 1280,
# 24+12 layers, 16 heads of 80, ffn 5120, ResNet blocks (3, 8, 36) of width 64, 59457 tokens,
# 1024 positions, 256 text and 42 image buckets); the bounds leave ten times that room or more
# for custom models, yet stop a damaged or hostile config.json from asking for terabytes (or
# a list of billions of position ids) before a single weight is read.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "d_model": (1, 16384), "encoder_layers": (1, 256), "decoder_layers": (1, 256),
    "attention_heads": (1, 1024), "ffn_dim": (1, 65536), "head_dim": (1, 4096),
    "resnet_width": (1, 1024), "vocab_size": (4, 1_000_000),
    "max_source_positions": (1, 65536), "max_target_positions": (1, 65536),
    "token_bucket_size": (1, 65536), "image_bucket_size": (1, 1024),
    "code_image_size": (8, 4096), "num_type_embeddings": (1, 64),
    "orig_patch_image_size": (16, 16384),
    "pad_token_id": (0, 999_999), "bos_token_id": (0, 999_999), "eos_token_id": (0, 999_999),
}
MAX_RESNET_BLOCKS = 256  # per stage (ofa-huge: 36)
# Inclusive bounds of the float fields; every rate is a probability below 1.
FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "attn_scale_factor": (1e-6, 1e6), "layer_norm_eps": (1e-30, 1.0),
    **{name: (0.0, 0.999) for name in ("dropout", "attention_dropout", "activation_dropout",
                                        "encoder_drop_path_rate", "decoder_drop_path_rate",
                                        "resnet_drop_path_rate")},
}
# Fields that decide tensor shapes: a stored config must give them (the others default).
SHAPE_FIELDS = ("d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim",
                "resnet_layers", "resnet_width", "vocab_size", "max_source_positions",
                "max_target_positions", "token_bucket_size", "image_bucket_size",
                "num_type_embeddings")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_int(name: str, value: Any, low: int, high: int) -> int:
    if not _is_int(value):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _checked_float(name: str, value: Any, low: float, high: float) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


@dataclass
class OFAConfig:
    """Hyper-parameters of one OFA model.

    Defaults are the ``base`` preset; ``OFAConfig.preset(name)`` gives any released size. Custom
    small configs (fewer layers, a lighter ResNet) are fine for tests and training from scratch.
    """

    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    attention_heads: int = 12
    ffn_dim: int = 3072
    head_dim: int | None = None  # defaults to d_model // attention_heads (80 for huge)
    resnet_layers: tuple[int, int, int] = (3, 4, 23)  # Bottleneck blocks in stages 1-3
    resnet_width: int = 64  # stem width; the backbone outputs 16 * resnet_width channels
    vocab_size: int = VOCAB_SIZE
    max_source_positions: int = 1024
    max_target_positions: int = 1024
    token_bucket_size: int = 256
    image_bucket_size: int = 42
    code_image_size: int = 128  # image-generation canvas; decoder code grid is size // 8
    attn_scale_factor: float = 2.0
    layer_norm_eps: float = 1e-5
    num_type_embeddings: int = 2
    # Add the absolute position embeddings to the token/patch embeddings as well (the official
    # ``--entangle-position-embedding`` without ``--disable-entangle``). Every released
    # checkpoint has False: positions reach attention only as a bias, never the values.
    entangle_position_embedding: bool = False
    # OFA-OCR's --interpolate-position: when an image has more patches than a side of
    # orig_patch_image_size gives, the image position table is read on that smaller grid and
    # bilinearly resized to the image's grid (OFA-Sys/OFA models/ofa/unify_transformer.py,
    # get_patch_images_info). The official default side is 256.
    interpolate_position: bool = False
    orig_patch_image_size: int = 256
    # regularisation (all 0 at inference; the official fine-tuning scripts use 0.1)
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_drop_path_rate: float = 0.0
    decoder_drop_path_rate: float = 0.0
    resnet_drop_path_rate: float = 0.0
    pad_token_id: int = PAD_ID
    bos_token_id: int = BOS_ID
    eos_token_id: int = EOS_ID
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self._validate()
        if self.head_dim is None:
            if self.d_model % self.attention_heads:
                raise InputError(
                    f"d_model={self.d_model} is not divisible by attention_heads="
                    f"{self.attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.d_model // self.attention_heads

    def _validate(self) -> None:
        """Check every field's type and range (InputError naming the field); normalise
        integral values to int and ``resnet_layers`` to a tuple."""
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if not (name == "head_dim" and value is None):
                setattr(self, name, _checked_int(name, value, low, high))
        for name, (low, high) in FLOAT_BOUNDS.items():
            setattr(self, name, _checked_float(name, getattr(self, name), low, high))
        blocks = self.resnet_layers
        if not isinstance(blocks, list | tuple) or len(blocks) != 3:
            raise InputError(f"resnet_layers must be 3 block counts, got {blocks!r}")
        self.resnet_layers = tuple(  # type: ignore[assignment]
            _checked_int("resnet_layers", n, 1, MAX_RESNET_BLOCKS) for n in blocks)
        for name in ("entangle_position_embedding", "interpolate_position"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise InputError(f"name must be a string or null, got {self.name!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(self, name) >= self.vocab_size:
                raise InputError(f"{name} {getattr(self, name)} is outside the vocabulary "
                                 f"(vocab_size {self.vocab_size})")

    @property
    def num_image_positions(self) -> int:
        return self.image_bucket_size**2 + 1  # row 0 is reserved (decoder BOS in code mode)

    @property
    def num_image_rel_buckets(self) -> int:
        return (2 * self.image_bucket_size - 1) ** 2 + 3

    @classmethod
    def preset(cls, name: str, **overrides) -> OFAConfig:
        key = name.lower().removeprefix("ofa-").removeprefix("ofa_")
        if key not in PRESETS:
            raise InputError(f"unknown OFA size {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[key], name=key, **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resnet_layers"] = list(self.resnet_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> OFAConfig:
        """The config a stored dict (``to_dict``'s output) describes; InputError naming the
        field for unknown or missing shape fields, wrong types and out-of-range values."""
        if not isinstance(d, dict):
            raise InputError(f"a model config must be a mapping of fields, got "
                             f"{type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - known))
        if unknown:
            raise InputError(f"unknown OFAConfig fields: {unknown}")
        missing = [name for name in SHAPE_FIELDS if name not in d]
        if missing:
            raise InputError(f"missing OFAConfig fields: {missing}")
        return cls(**d)


# Official presets: ofa_tiny ... ofa_huge in OFA-Sys/OFA models/ofa/ofa.py.
PRESETS: dict[str, OFAConfig] = {
    "tiny": OFAConfig(d_model=256, encoder_layers=4, decoder_layers=4, attention_heads=4,
                      ffn_dim=1024, resnet_layers=(3, 4, 6), name="tiny"),
    "medium": OFAConfig(d_model=512, encoder_layers=4, decoder_layers=4, attention_heads=8,
                        ffn_dim=2048, resnet_layers=(3, 4, 23), name="medium"),
    "base": OFAConfig(d_model=768, encoder_layers=6, decoder_layers=6, attention_heads=12,
                      ffn_dim=3072, resnet_layers=(3, 4, 23), name="base"),
    "large": OFAConfig(d_model=1024, encoder_layers=12, decoder_layers=12, attention_heads=16,
                       ffn_dim=4096, resnet_layers=(3, 8, 36), name="large"),
    "huge": OFAConfig(d_model=1280, encoder_layers=24, decoder_layers=12, attention_heads=16,
                      ffn_dim=5120, resnet_layers=(3, 8, 36), name="huge"),
}
