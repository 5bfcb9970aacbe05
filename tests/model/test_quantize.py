"""Dynamic int8: which layers turn int8, how far the outputs move, and the API path."""

from __future__ import annotations

import pytest
import torch

import ofa
from ofa.errors import InputError
from ofa.model import OFAModel
from ofa.model.quantize import INT8_LAYERS, quantize_int8

from conftest import text_batch, tiny_config

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


def test_only_the_attention_and_feed_forward_layers_turn_int8():
    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    ids, images = text_batch([7, 5]), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model.decode(ids[:, :4], model.encode(ids, images))
        quantize_int8(model)
        after = model.decode(ids[:, :4], model.encode(ids, images))
    int8 = {name.rsplit(".", 1)[-1]: isinstance(m, DynamicLinear)
            for name, m in model.named_modules() if isinstance(m, torch.nn.Linear | DynamicLinear)}
    assert all(int8[n] for n in INT8_LAYERS)
    assert not int8["pos_q_linear"] and not int8["image_proj"]
    # int8 weights move the logits a little, not the picture
    assert 0 < (after - before).abs().max() < 0.05 * before.abs().max()
    assert torch.equal(after.argmax(-1), before.argmax(-1))


def test_int8_needs_fp32_cpu_weights():
    model = OFAModel(tiny_config()).to(torch.bfloat16)
    with pytest.raises(InputError, match="int8 runs on the CPU from float32"):
        quantize_int8(model)


def test_load_int8_captions_as_fp32_does(image):
    fp32 = ofa.load("shapes-demo", device="cpu")
    int8 = ofa.load("shapes-demo", device="cpu", dtype="int8")
    assert isinstance(int8.model.decoder.layers[0].fc1, DynamicLinear)
    assert int8.caption(image)["caption"] == fp32.caption(image)["caption"]


def test_an_int8_model_has_its_own_weights_fingerprint():
    """Evaluation records which weights made its predictions; int8 state dicts hold packed
    tuples and dtypes beside tensors."""
    from ofa.evaluate import weights_fingerprint

    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    fp32 = weights_fingerprint(model)
    int8 = weights_fingerprint(quantize_int8(model))
    assert fp32 != int8 and int8 == weights_fingerprint(model)
