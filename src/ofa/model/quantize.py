"""Int8 for CPU inference.

- The attention and feed-forward projections and the vocabulary projection hold int8 weights,
  quantized per output channel once, and quantize their input per batch on the fly (PyTorch's
  dynamic quantization: fbgemm / oneDNN kernels, which use AVX512-VNNI where the CPU has it).
  A decoding step streams its weights from memory, so a quarter of the bytes is what pays
  there; the vocabulary projection (the [V, D] table, 59,457 x 768 in OFA-base) is the largest
  of them. It gets an int8 copy of the tied table; the embedding lookups keep the float rows,
  and so do the restricted projections (a task's answer or code ids, ``decode(vocab=...)``).
- The ResNet runs in bf16 where the CPU has native bf16 (AVX512-BF16 or AMX), in fp32
  elsewhere: convolutions have no dynamic int8 path, and bf16 halves their time where it is
  native. (Running the encoder layers in bf16 too, cast at each layer, was slower than int8
  there: the position biases around them stay fp32; BENCHMARKS.md.)
- The position projections, norms and the attention itself stay fp32.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import InputError
from ..hardware import native_bf16
from .ofa import OFAModel

__all__ = ["INT8_LAYERS", "quantize_int8"]

INT8_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _dynamic_int8(linear: nn.Linear) -> nn.Module:
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # PyTorch marks the eager API as moving to torchao
        warnings.simplefilter("ignore")
        return torch.ao.nn.quantized.dynamic.Linear.from_float(linear)


def _run_in_bf16(module: nn.Module) -> None:
    """``module`` computes in bf16 and hands fp32 on (its weights cast once, its input and
    output at the boundary), so the modules around it are unchanged."""
    module.to(torch.bfloat16)
    module.register_forward_pre_hook(lambda _, args: tuple(
        a.to(torch.bfloat16) if torch.is_tensor(a) and a.is_floating_point() else a
        for a in args))
    module.register_forward_hook(lambda _, __, out: out.float())


def quantize_int8(model: OFAModel, backbone_bf16: bool | None = None) -> OFAModel:
    """``model`` (fp32, on the CPU, for inference) with int8 linear layers and an int8
    vocabulary projection, in place. ``backbone_bf16``: run the ResNet in bf16 (default: where
    the CPU has native bf16)."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    table = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    table.weight = weight  # quantized from the tied table; the table itself stays float
    model.vocab_projection = _dynamic_int8(table)
    if backbone_bf16 is None:
        backbone_bf16 = native_bf16()
    if backbone_bf16:
        _run_in_bf16(model.encoder.embed_images)
    return model.eval()
