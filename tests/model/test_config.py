"""OFAConfig checks every field: type, range, and (from a stored dict) presence."""

from __future__ import annotations

import numpy as np
import pytest

from ofa.errors import InputError
from ofa.model import PRESETS, OFAConfig
from ofa.model.config import INT_BOUNDS, SHAPE_FIELDS

from conftest import tiny_config


def test_presets_and_the_tiny_test_config_are_valid():
    for name in PRESETS:
        assert OFAConfig.preset(name).name == name
    assert tiny_config().head_dim == 16


@pytest.mark.parametrize("field, value, message", [
    ("d_model", -64, "d_model must be between 1 and 16384, got -64"),
    ("d_model", 0, "d_model must be between 1"),
    ("vocab_size", 10**9, "vocab_size must be between 4 and 1000000, got 1000000000"),
    ("encoder_layers", 100_001, "encoder_layers must be between 1 and 256"),
    ("image_bucket_size", 10**6, "image_bucket_size must be between"),
    ("code_image_size", 10**7, "code_image_size must be between"),
    ("d_model", "64", "d_model must be an integer, got '64'"),
    ("d_model", 64.0, "d_model must be an integer, got 64.0"),
    ("ffn_dim", True, "ffn_dim must be an integer, got True"),
    ("head_dim", 0, "head_dim must be between 1"),
    ("resnet_layers", (1, 1), "resnet_layers must be 3 block counts"),
    ("resnet_layers", (1, 0, 1), "resnet_layers must be between 1 and 256, got 0"),
    ("resnet_layers", "abc", "resnet_layers must be 3 block counts"),
    ("dropout", 1.5, "dropout must be between 0 and 0.999, got 1.5"),
    ("attention_dropout", float("nan"), "attention_dropout must be between"),
    ("layer_norm_eps", "1e-5", "layer_norm_eps must be a number, got '1e-5'"),
    ("entangle_position_embedding", "yes", "entangle_position_embedding must be true or false"),
    ("name", 5, "name must be a string or null"),
    ("eos_token_id", 60_000, "eos_token_id 60000 is outside the vocabulary"),
])
def test_each_field_is_checked_by_name(field, value, message):
    with pytest.raises(InputError, match=f"^{message}"):
        tiny_config(**{field: value})


def test_integral_values_are_normalised():
    c = tiny_config(d_model=np.int64(64), resnet_layers=[1, np.int32(2), 1])
    assert type(c.d_model) is int and c.resnet_layers == (1, 2, 1)
    assert all(type(n) is int for n in c.resnet_layers)


def test_bounds_leave_room_above_the_largest_released_model():
    huge = OFAConfig.preset("huge")
    for name, (low, high) in INT_BOUNDS.items():
        assert low <= getattr(huge, name) and getattr(huge, name) * 4 <= high, name


def test_from_dict_names_unknown_missing_and_malformed_fields():
    d = tiny_config().to_dict()
    assert OFAConfig.from_dict(d) == tiny_config()
    with pytest.raises(InputError, match=r"unknown OFAConfig fields: \['bogus'\]"):
        OFAConfig.from_dict({**d, "bogus": 1})
    for name in SHAPE_FIELDS:
        with pytest.raises(InputError, match=rf"missing OFAConfig fields: \['{name}'\]"):
            OFAConfig.from_dict({k: v for k, v in d.items() if k != name})
    # behaviour fields added later default, so older stored configs still load
    older = {k: v for k, v in d.items() if k != "entangle_position_embedding"}
    assert OFAConfig.from_dict(older).entangle_position_embedding is False
    with pytest.raises(InputError, match="must be a mapping of fields, got list"):
        OFAConfig.from_dict([1, 2])  # type: ignore[arg-type]
