"""Dynamic int8: which layers turn int8, how far the outputs move, and the API path."""

from __future__ import annotations

import pytest
import torch

import ofa
from ofa.errors import InputError
from ofa.model import OFAModel
from ofa.model.quantize import INT8_LAYERS, Int8Linear, quantize_int8

from conftest import text_batch, tiny_config

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


@pytest.mark.parametrize("float_dtype", [torch.float32, torch.bfloat16])
def test_the_attention_feed_forward_and_vocabulary_projections_turn_int8(float_dtype):
    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    ids, images = text_batch([7, 5]), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        enc = model.encode(ids, images)
        before = model.decode(ids[:, :4], enc)
        subset = model.decode(ids[:, :4], enc, vocab=model.embed_tokens.weight[:40])
        quantize_int8(model, float_dtype=float_dtype)
        enc8 = model.encode(ids, images)
        after = model.decode(ids[:, :4], enc8)
        subset8 = model.decode(ids[:, :4], enc8, vocab=model.embed_tokens.weight[:40])
    int8 = {name: isinstance(m, DynamicLinear) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear | DynamicLinear)}
    for name, is_int8 in int8.items():
        projection = ".layers." in name and name.rsplit(".", 1)[-1] in INT8_LAYERS
        if name.startswith("decoder."):
            assert is_int8 == projection, name
        elif name.startswith("encoder."):  # int8 only where the float is fp32
            assert is_int8 == (projection and float_dtype == torch.float32), name
        else:
            assert is_int8 == (name == "vocab_projection"), name
    # the tied table stays float: embeddings and restricted projections read it
    assert model.embed_tokens.weight.dtype == float_dtype
    assert model.encoder.embed_images.conv1.weight.dtype == float_dtype
    assert enc8.hidden.dtype == float_dtype and after.dtype == torch.float32
    # int8 weights move the logits a little (random weights: near-tied argmaxes may flip; the
    # demo model's captions below are the real check)
    for a, b in ((after, before), (subset8, subset)):
        assert 0 < (a.float() - b).abs().max() < 0.05 * b.abs().max()


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


@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16])
def test_int8_linear_casts_at_its_boundary_as_pytorch_would(out_dtype):
    # one module call: the input to fp32, PyTorch's own dynamic int8 forward, the output to
    # out_dtype (None: fp32, as the logits), with no hooks
    torch.manual_seed(0)
    float_layer = torch.nn.Linear(32, 48)
    float_layer.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    layer = Int8Linear.from_float(float_layer)
    reference = DynamicLinear.from_float(float_layer)
    layer.out_dtype = out_dtype
    x = torch.randn(3, 32).bfloat16()
    with torch.no_grad():
        out = layer(x)
        expected = reference(x.float())
    assert out.dtype == (out_dtype or torch.float32)
    assert torch.equal(out, expected if out_dtype is None else expected.to(out_dtype))
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_int8_layers_of_a_bf16_model_give_bf16_and_the_logits_fp32():
    model = quantize_int8(OFAModel(tiny_config()).eval(), float_dtype=torch.bfloat16)
    dtypes = {name: m.out_dtype for name, m in model.named_modules() if isinstance(m, Int8Linear)}
    assert dtypes.pop("vocab_projection") is None
    assert dtypes and set(dtypes.values()) == {torch.bfloat16}
