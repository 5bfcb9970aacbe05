"""Int8 for CPU inference: int8 weights where a step streams them, the fastest native float
where it computes.

- The decoder's attention and feed-forward projections and the vocabulary projection hold int8
  weights, quantized per output channel once, and quantize their input per batch on the fly
  (PyTorch's dynamic quantization: fbgemm / oneDNN kernels, which use AVX512-VNNI where the CPU
  has it). A decoding step streams its weights from memory, so a quarter of the bytes is what
  pays there; the vocabulary projection (the [V, D] table, 59,457 x 768 in OFA-base) is the
  largest of them. It gets an int8 copy of the tied table; the embedding lookups keep the float
  rows, and so do the restricted projections (a task's answer or code ids,
  ``decode(vocab=...)``).
- The rest runs in the fastest float the CPU has natively: bf16 where it has AVX512-BF16 or AMX,
  else fp32. The encoder (once per image, ~900 positions) is bound by arithmetic: in bf16 it
  runs at twice fp32's speed there, faster than dynamic int8, which quantizes every
  activation; where bf16 is not native its projections are int8 too (faster than fp32).
  Convolutions have no dynamic int8 path: the ResNet is in that float. Int8 layers take and
  give fp32 at their boundary.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import InputError
from ..hardware import native_bf16
from .ofa import OFAModel

__all__ = ["INT8_LAYERS", "Int8Linear", "quantize_int8"]

INT8_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class Int8Linear(torch.ao.nn.quantized.dynamic.Linear):
    """PyTorch's dynamic int8 linear (per-channel int8 weight, fp32 input quantized per call)
    inside a model of another float dtype: it casts its input to fp32 and its output to
    ``out_dtype`` (None: leaves it fp32, as the logits) in its own forward. Hooks doing the
    casts cost a decoding step about 8 us a layer."""

    out_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range as PyTorch's own forward (module version 4) passes it
        y = torch.ops.quantized.linear_dynamic(x.float(), self._packed_params._packed_params,
                                               reduce_range=True)
        return y if self.out_dtype is None else y.to(self.out_dtype)


def _dynamic_int8(linear: nn.Linear) -> Int8Linear:
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # PyTorch marks the eager API as moving to torchao
        warnings.simplefilter("ignore")
        return Int8Linear.from_float(linear)


def quantize_int8(model: OFAModel, float_dtype: torch.dtype | None = None) -> OFAModel:
    """``model`` (fp32, on the CPU, for inference) with int8 decoder projections and an int8
    vocabulary projection, in place; the rest in ``float_dtype`` (default: bf16 where the CPU
    has native bf16, else fp32, where the encoder's projections turn int8 too)."""
    weight = model.embed_tokens.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise InputError("int8 runs on the CPU from float32 weights (use device cpu)")
    if torch.backends.quantized.engine == "none":
        raise InputError("this PyTorch build has no quantized CPU kernels for int8")
    if float_dtype is None:
        float_dtype = torch.bfloat16 if native_bf16() else torch.float32
    quantized = ("decoder.",) if float_dtype != torch.float32 else ("decoder.", "encoder.")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    # the attention and feed-forward projections: the position projections feed the
    # attention bias once per input, and stay exact
    spec = {name: qconfig for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in INT8_LAYERS
            and name.startswith(quantized)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8,
                                               mapping={nn.Linear: Int8Linear}, inplace=True)
    table = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    table.weight = weight  # quantized from the tied table; the table itself stays float
    model.vocab_projection = _dynamic_int8(table)
    if float_dtype != torch.float32:
        model.to(float_dtype)  # the float parts; the int8 layers keep their packed weights
        for name, m in model.named_modules():
            if isinstance(m, Int8Linear) and name != "vocab_projection":
                m.out_dtype = float_dtype
    return model.eval()
