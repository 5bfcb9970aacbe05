"""What the machine runs natively, for picking a dtype and for labelling benchmark tables.

PyTorch reports the CPU's instruction sets (``torch._C._cpu._get_cpu_capability()``, the
cpuinfo library it ships); where that private call is missing, ``/proc/cpuinfo`` flags are
read instead. bf16 is native on a CPU with AVX512-BF16 or AMX-BF16: elsewhere PyTorch emulates
bf16 matmuls and takes a slow path for convolutions (``aten::_slow_conv2d_forward``), many
times slower than fp32, so ``dtype="auto"`` keeps fp32 there and an explicit bf16 warns once.

oneDNN, which runs the bf16 and int8 matmuls and convolutions, can be held below the CPU's
instruction sets with ``ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``, as on an AVX2-only CPU): the
flags above that level then read as absent, so ``auto`` and the warning follow what the
kernels may use. :data:`ISA_LIMITS` are the variables that hold kernels back; benchmark
tables name those that are set.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import warnings
from pathlib import Path

import torch

__all__ = ["CPU_FLAGS", "ISA_LIMITS", "auto_dtype", "cpu_flags", "cpu_model", "cpu_summary",
           "isa_limits", "keep_freed_memory", "limit_flags", "native_bf16", "warn_if_emulated"]

#: the flags benchmark tables name: what decides the speed of fp32, bf16 and int8 kernels
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


#: environment variables that keep PyTorch's kernels below the CPU's instruction sets
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "FBGEMM_ENABLE_INSTRUCTIONS",
              "MKL_ENABLE_INSTRUCTIONS")
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) from which each flag's instructions may be used
_ONEDNN_FLOOR = {"avx2": "AVX2", "avx512f": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
                 "avx512_bf16": "AVX512_CORE_BF16", "amx_bf16": "AVX512_CORE_AMX",
                 "amx_int8": "AVX512_CORE_AMX"}
# each level includes the ones before it (the AVX10 names, not a chain with these, mean no limit)
_ONEDNN_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                 "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                 "AVX512_CORE_AMX_FP16")


def limit_flags(flags: dict[str, bool], max_isa: str | None) -> dict[str, bool]:
    """``flags`` as oneDNN may use them under ``ONEDNN_MAX_CPU_ISA=max_isa`` (None, empty,
    ``ALL``, ``DEFAULT`` or an unknown name: no limit)."""
    name = (max_isa or "").strip().upper()
    if name not in _ONEDNN_ORDER:
        return dict(flags)
    level = _ONEDNN_ORDER.index(name)
    return {f: has and _ONEDNN_ORDER.index(_ONEDNN_FLOOR[f]) <= level
            for f, has in flags.items()}


def isa_limits() -> dict[str, str]:
    """The :data:`ISA_LIMITS` variables set in this process, by name."""
    return {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, bool]:
    """Each of :data:`CPU_FLAGS` -> whether this CPU has it and oneDNN may use it."""
    max_isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return limit_flags(_found_flags(), max_isa)


def _found_flags() -> dict[str, bool]:
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
    """The CPU's model name (``/proc/cpuinfo``, :func:`cpuinfo_model`), else what the platform
    module says."""
    try:
        found = cpuinfo_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        found = None
    return found or platform.processor() or platform.machine()


def cpuinfo_model(text: str) -> str | None:
    """The first processor's model name in ``/proc/cpuinfo`` text, with its family and model
    numbers: virtual machines often name every generation "AMD EPYC" (family 25 is Zen 3 and
    Zen 4, 26 Zen 5)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if not key.strip():
            break  # the end of the first processor's block
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return None
    numbers = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
    return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")


def cpu_summary() -> str:
    """One line for benchmark tables: model, cores PyTorch uses, the relevant flags."""
    flags = cpu_flags()
    have = [f.upper().replace("_", "-") for f in CPU_FLAGS if flags[f]]
    lacks = [f.upper().replace("_", "-") for f in CPU_FLAGS if not flags[f]]
    limits = "".join(f"; {k}={v}" for k, v in isa_limits().items())
    return (f"{cpu_model()}, {torch.get_num_threads()} threads; has {', '.join(have) or '-'}; "
            f"lacks {', '.join(lacks) or '-'}{limits}")


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


# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 256 << 20, 512 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse: blocks up to
    :data:`MMAP_THRESHOLD_BYTES` come from the heap instead of a mapping of their own, and up
    to :data:`TRIM_THRESHOLD_BYTES` of free heap stay with the process. Returns whether it
    applied (once per process; ``ofa.load`` calls it for CPU models).

    Inference allocates and frees the same large activations at every layer (OFA-base in fp32
    at 480 px: 11 MB FFN activations, the ResNet's feature maps); under glibc's defaults (an
    adaptive mmap threshold of at most 32 MB, and the heap's top handed back past twice it)
    they went back to the system and were mapped afresh: up to 65,000 minor page faults per
    caption, against 6 with these settings; an fp32 caption ran 3-12% faster on a Zen 5 EPYC
    (the gain depends on how the process allocated before), for about 180 MB more peak
    memory (BENCHMARKS.md). The cost is memory the process keeps after a peak. A no-op off
    glibc, and with ``OFA_KEEP_FREED_MEMORY=0``."""
    if os.environ.get("OFA_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
