"""This machine's ceilings, measured in the running process on its threads: the matmul
FLOP/s of a dtype and the bandwidth of a plain read. Every table that states a share of the
peak or of the floor (``roofline.py``, ``speed.py``, ``imagine_speed.py``, ``gemv.py``)
divides by these, so that the shares are comparable across tables."""

from __future__ import annotations

import time

import torch


def best_ms(fn, repeats: int = 5) -> float:
    """Milliseconds of the fastest of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def read_ceiling_gbps() -> float:
    """GB/s of a plain read (``sum``) of 200 MB of fp32."""
    return 200e6 / best_ms(torch.randn(50_000_000).sum) / 1e6


def matmul_peak_gflops(kind: str | torch.dtype, size: int = 2048) -> float:
    """GFLOP/s of a ``size``^3 matmul in ``kind``: a float dtype (or its name), or ``"int8"``
    for the dynamic-int8 linear of ``ofa.model.quantize``. For a float dtype, the faster of
    PyTorch's ``matmul`` and oneDNN's linear on a packed weight (``ofa.model.packed``, what
    the model's linear layers run): fp32 ``matmul`` is MKL's, which on AMD CPUs takes a path
    that reached under half of oneDNN's speed on an AVX512 EPYC (Zen 5: 236 against 546
    GFLOP/s), so it alone would understate the peak and overstate every share of it."""
    if kind == "int8":
        from ofa.model.quantize import _dynamic_int8

        layer = _dynamic_int8(torch.nn.Linear(size, size, bias=False))
        x = torch.randn(size, size)
        return 2 * size**3 / best_ms(lambda: layer(x)) / 1e6
    from ofa.model.packed import packs

    dtype = getattr(torch, kind) if isinstance(kind, str) else kind
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    ms = best_ms(lambda: a @ b)
    if packs(dtype):  # not bf16 without AVX512, nor a build without oneDNN
        packed = torch.ops.mkldnn._reorder_linear_weight(b, None)
        ms = min(ms, best_ms(lambda: torch.ops.mkldnn._linear_pointwise(
            a, packed, None, "none", [], "")))
    return 2 * size**3 / ms / 1e6
