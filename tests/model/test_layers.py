"""The shared layer pieces: GELU's bf16 inference shortcut equals the fp32 computation."""

import torch
import torch.nn.functional as F

from ofa.model.layers import gelu


def test_bf16_inference_gelu_equals_gelu_in_fp32_bit_for_bit():
    x = torch.cat([torch.randn(4096) * 4, torch.linspace(-12, 12, 4097),
                   torch.tensor([0.0, -0.0, 1e-30, -1e30, float("inf"), float("-inf")])])
    x = x.bfloat16()
    want = F.gelu(x.float()).bfloat16()
    with torch.no_grad():
        got = gelu(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)  # gelu(-inf) is nan
    # with autograd recording it keeps the explicit fp32 computation (and its gradient)
    leaf = x.clone().requires_grad_()
    out = gelu(leaf)
    out.float().sum().backward()
    torch.testing.assert_close(out.detach(), want, rtol=0, atol=0, equal_nan=True)
    assert leaf.grad is not None
