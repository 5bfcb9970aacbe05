"""The encoder's position biases kept between inference calls of one input shape (from the
second call in a row with that shape)."""

from __future__ import annotations

import copy

import pytest
import torch

import ofa.model.encoder as encoder_module
from ofa.model import OFAModel

from conftest import text_batch, tiny_config


@pytest.fixture
def model() -> OFAModel:
    torch.manual_seed(0)
    return OFAModel(tiny_config()).eval()


def encode(model: OFAModel, ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(ids, images).hidden


def uncached(model: OFAModel, ids: torch.Tensor, images: torch.Tensor,
             monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(encoder_module, "BIAS_CACHE_BYTES", 0)
        return encode(model, ids, images)


def cached(model: OFAModel) -> list[torch.Tensor] | None:
    hit = model.encoder.__dict__.get("_ofa_position_biases", {}).get("biases")
    return None if hit is None else hit[3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_biases_give_the_same_outputs(model, monkeypatch, dtype):
    model = model.to(dtype)
    ids = text_batch([9, 6])  # padded: the key padding is added to the cached biases
    images = torch.randn(2, 3, 64, 64, dtype=dtype)
    want = uncached(model, ids, images, monkeypatch)
    assert cached(model) is None
    first = encode(model, ids, images)
    assert cached(model) is None  # a shape seen once: the one reused buffer, as before
    second = encode(model, ids, images)
    kept = cached(model)
    assert kept is not None and len(kept) == 2  # one per layer
    third = encode(model, ids, images)
    assert cached(model)[0] is kept[0]  # the third call reused them
    for got in (first, second, third):
        assert torch.equal(got, want)


def test_a_new_shape_or_changed_weights_make_them_again(model, monkeypatch):
    ids, images = text_batch([9]), torch.randn(1, 3, 64, 64)
    encode(model, ids, images), encode(model, ids, images)
    old = cached(model)
    shorter = text_batch([7])
    for _ in range(2):
        assert torch.equal(encode(model, shorter, images), uncached(model, shorter, images,
                                                                    monkeypatch))
    assert cached(model)[0].shape[-1] != old[0].shape[-1]
    larger = torch.randn(1, 3, 96, 96)
    for _ in range(2):
        assert torch.equal(encode(model, shorter, larger), uncached(model, shorter, larger,
                                                                    monkeypatch))
    encode(model, ids, images)  # shapes that keep changing are not kept
    assert cached(model) is None
    for _ in range(2):
        encode(model, shorter, larger)
    for table in (model.encoder.image_rel_pos_table_list[1].weight,
                  model.encoder.pos_q_linear.weight):
        before = cached(model)
        with torch.no_grad():
            table.mul_(1.5)  # in place: the same tensor at a new version
        got = encode(model, shorter, larger)
        assert cached(model)[0] is not before[0]
        assert torch.equal(got, uncached(model, shorter, larger, monkeypatch))


def test_training_tracing_and_big_inputs_keep_nothing(model, monkeypatch):
    ids, images = text_batch([9]), torch.randn(1, 3, 64, 64)
    model.encode(ids, images)  # autograd on: nothing kept
    assert cached(model) is None
    with monkeypatch.context() as m:  # 2 layers x 4 heads x 25 x 25 fp32 = 20 KB
        m.setattr(encoder_module, "BIAS_CACHE_BYTES", 10_000)
        encode(model, ids, images), encode(model, ids, images)
        assert cached(model) is None
    encode(model, ids, images), encode(model, ids, images)
    assert cached(model) is not None
    assert cached(copy.deepcopy(model)) is None  # copies derive their own
