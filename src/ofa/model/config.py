"""OFAConfig: every size-dependent number of the architecture, with the official presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError

# Vocabulary layout shared by every released checkpoint (reference section 1.9).
VOCAB_SIZE = 59457
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


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
        self.resnet_layers = tuple(int(n) for n in self.resnet_layers)  # type: ignore[assignment]
        if self.head_dim is None:
            if self.d_model % self.attention_heads:
                raise InputError(
                    f"d_model={self.d_model} is not divisible by attention_heads="
                    f"{self.attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.d_model // self.attention_heads
        if len(self.resnet_layers) != 3 or min(self.resnet_layers) < 1:
            raise InputError(f"resnet_layers must be 3 positive block counts, got "
                             f"{self.resnet_layers}")

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown OFAConfig fields: {unknown}")
        return cls(**d)


# Reference section 1.1: official presets (ofa_tiny ... ofa_huge in models/ofa/ofa.py).
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
