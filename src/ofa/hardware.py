"""What the machine runs natively, for picking a dtype and for labelling benchmark tables.

PyTorch reports the CPU's instruction sets (``torch._C._cpu._get_cpu_capability()``, the
cpuinfo library it ships); where that private call is missing, ``/proc/cpuinfo`` flags are
read instead. bf16 is native on a CPU with AVX512-BF16 or AMX-BF16: elsewhere PyTorch emulates
bf16 matmuls and takes a slow path for convolutions (``aten::_slow_conv2d_forward``), many
times slower than fp32, so ``dtype="auto"`` keeps fp32 there and an explicit bf16 warns once.
"""

from __future__ import annotations

import functools
import platform
import warnings
from pathlib import Path

import torch

__all__ = ["CPU_FLAGS", "auto_dtype", "cpu_flags", "cpu_model", "cpu_summary", "native_bf16",
           "warn_if_emulated"]

#: the flags benchmark tables name: what decides the speed of fp32, bf16 and int8 kernels
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, bool]:
    """Each of :data:`CPU_FLAGS` -> whether this CPU has it."""
    try:
        cap = torch._C._cpu._get_cpu_capability()
        found = {"avx2": cap.get("avx2", False), "avx512f": cap.get("avx512_f", False),
                 **{f: cap.get(f, False) for f in CPU_FLAGS[2:]}}
        return {f: bool(found[f]) for f in CPU_FLAGS}
    except (AttributeError, RuntimeError, TypeError):
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return dict.fromkeys(CPU_FLAGS, False)
    words = set(text.split())
    return {f: f in words for f in CPU_FLAGS}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary() -> str:
    """One line for benchmark tables: model, cores PyTorch uses, the relevant flags."""
    flags = cpu_flags()
    have = [f.upper().replace("_", "-") for f in CPU_FLAGS if flags[f]]
    lacks = [f.upper().replace("_", "-") for f in CPU_FLAGS if not flags[f]]
    return (f"{cpu_model()}, {torch.get_num_threads()} threads; has {', '.join(have) or '-'}; "
            f"lacks {', '.join(lacks) or '-'}")


def native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags()
    return flags["avx512_bf16"] or flags["amx_bf16"]


def auto_dtype(device: torch.device) -> torch.dtype:
    """The fastest dtype ``device`` runs natively: bf16 on GPUs that have it (else fp16),
    fp16 on Apple GPUs, bf16 on CPUs with native bf16, else fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if native_bf16() else torch.float32


@functools.cache
def warn_if_emulated(dtype: torch.dtype, device_type: str) -> None:
    """Warn once per (dtype, device type) that bf16 / fp16 on this CPU is emulated."""
    if device_type != "cpu" or dtype not in (torch.bfloat16, torch.float16):
        return
    if dtype == torch.bfloat16 and native_bf16():
        return
    name = "bfloat16" if dtype == torch.bfloat16 else "float16"
    need = "AVX512-BF16 or AMX" if dtype == torch.bfloat16 else "AMX-FP16 or AVX512-FP16"
    warnings.warn(
        f"{name} on this CPU ({cpu_model()}) is emulated: it lacks {need}, so PyTorch runs "
        f"{name} matmuls and convolutions on slow paths, often many times slower than "
        "float32. Use dtype float32 (or auto, which picks it here).", stacklevel=3)
