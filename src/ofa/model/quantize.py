"""Dynamic int8 for CPU inference: the attention and feed-forward projections hold int8
weights, quantized per output channel once, and
quantizes its input per batch on the fly (PyTorch's ``quantize_dynamic``, fbgemm / oneDNN
kernels, which use AVX512-VNNI where the CPU has it). The ResNet, the embeddings, the tied
vocabulary projection, the norms and the attention itself stay fp32: they are a small share of
a decoding step's weights except the vocabulary projection, whose logits pick the tokens."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import InputError
from .ofa import OFAModel

__all__ = ["INT8_LAYERS", "quantize_int8"]

INT8_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def quantize_int8(model: OFAModel) -> OFAModel:
    """``model`` (fp32, on the CPU, for inference) with int8 linear layers, in place."""
    weight = model.embed_tokens.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise InputError("int8 runs on the CPU from float32 weights (use device cpu)")
    if torch.backends.quantized.engine == "none":
        raise InputError("this PyTorch build has no quantized CPU kernels for int8")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    # the attention and feed-forward projections: the position projections feed the
    # attention bias once per input, and stay exact
    spec = {name: qconfig for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in INT8_LAYERS}
    with warnings.catch_warnings():  # PyTorch marks the eager API as moving to torchao
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    return model.eval()
