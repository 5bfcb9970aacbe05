"""Picking the dtype the hardware runs natively, and warning when it would be emulated."""

from __future__ import annotations

import warnings

import pytest
import torch

from ofa import hardware
from ofa.api import parse_dtype


@pytest.fixture()
def cpu(monkeypatch):
    """Pretend the CPU has exactly the given flags."""
    def set_flags(*names: str) -> None:
        flags = {f: f in names for f in hardware.CPU_FLAGS}
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        hardware.warn_if_emulated.cache_clear()
    yield set_flags
    hardware.warn_if_emulated.cache_clear()


def test_the_flags_of_this_machine_are_read():
    flags = hardware.cpu_flags()
    assert set(flags) == set(hardware.CPU_FLAGS)
    assert all(isinstance(v, bool) for v in flags.values())
    line = hardware.cpu_summary()
    assert "threads" in line and ("AVX2" in line or "lacks" in line)


def test_the_cpu_model_names_its_family():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
            "model name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert hardware.cpuinfo_model(text) == "AMD EPYC (cpu family 26, model 2)"
    assert hardware.cpuinfo_model("model name\t: Some CPU\n") == "Some CPU"
    assert hardware.cpuinfo_model("processor\t: 0\n") is None


@pytest.mark.parametrize(("flags", "expected"), [
    (("avx2",), torch.float32),                           # AVX2 only: bf16 is emulated
    (("avx2", "avx512f"), torch.float32),
    (("avx2", "avx512f", "avx512_bf16"), torch.bfloat16),
    (("avx2", "avx512f", "amx_bf16"), torch.bfloat16),
])
def test_auto_picks_bf16_only_where_the_cpu_has_it(cpu, flags, expected):
    cpu(*flags)
    assert parse_dtype("auto", torch.device("cpu")) == expected
    assert parse_dtype("float32") == torch.float32 and parse_dtype(None) is None


def test_emulated_bf16_warns_once_with_the_reason(cpu):
    cpu("avx2")
    with pytest.warns(UserWarning, match="bfloat16 on this CPU .* is emulated: it lacks "
                                         "AVX512-BF16 or AMX"):
        hardware.warn_if_emulated(torch.bfloat16, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hardware.warn_if_emulated(torch.bfloat16, "cpu")  # once only
        hardware.warn_if_emulated(torch.float32, "cpu")
        hardware.warn_if_emulated(torch.bfloat16, "cuda")


def test_native_bf16_does_not_warn(cpu):
    cpu("avx2", "avx512f", "avx512_bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hardware.warn_if_emulated(torch.bfloat16, "cpu")


def test_load_warns_for_an_explicit_emulated_dtype_only(cpu):
    import ofa

    cpu("avx2")
    with pytest.warns(UserWarning, match="emulated"):
        m = ofa.load("shapes-demo", device="cpu", dtype="bfloat16")
    assert m.dtype == torch.bfloat16
    hardware.warn_if_emulated.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ofa.load("shapes-demo", device="cpu", dtype="auto").dtype == torch.float32


@pytest.mark.parametrize(("max_isa", "left"), [
    (None, set(hardware.CPU_FLAGS)),
    ("ALL", set(hardware.CPU_FLAGS)),
    ("avx2", {"avx2"}),                                   # an AVX2-only CPU, as oneDNN sees it
    ("AVX512_CORE_VNNI", {"avx2", "avx512f", "avx512_vnni"}),
    ("AVX512_CORE_BF16", {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}),
])
def test_onednn_isa_limit_hides_the_flags_above_it(max_isa, left):
    every = dict.fromkeys(hardware.CPU_FLAGS, True)
    limited = hardware.limit_flags(every, max_isa)
    assert {f for f, has in limited.items() if has} == left
    assert hardware.limit_flags(dict.fromkeys(hardware.CPU_FLAGS, False), max_isa) == \
        dict.fromkeys(hardware.CPU_FLAGS, False)  # never adds a flag the CPU lacks


def test_limited_isa_makes_auto_keep_fp32_and_is_named(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    hardware.cpu_flags.cache_clear()
    try:
        assert not hardware.native_bf16()
        assert parse_dtype("auto", torch.device("cpu")) == torch.float32
        assert "ONEDNN_MAX_CPU_ISA=AVX2" in hardware.cpu_summary()
    finally:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        hardware.cpu_flags.cache_clear()


# a 40 MB tensor made, written and freed ten times; prints the minor page faults it took
_FAULTS = """
import resource, sys, torch
from ofa.hardware import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.empty(10 << 20).fill_(1.0)  # the first one maps its pages in either case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(10 << 20).fill_(1.0)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(hardware.platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_stops_large_blocks_from_faulting_again():
    import os
    import subprocess
    import sys

    def faults(mode: str, **env: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], check=True, text=True,
                             capture_output=True, env={**os.environ, **env}).stdout.split()
        return out[0], int(out[1])

    _, plain = faults("plain")
    applied, kept = faults("keep")
    opted_out, opted_out_faults = faults("keep", OFA_KEEP_FREED_MEMORY="0")
    # 40 MB is 10,240 pages: mapped afresh each of the 10 times by default; when kept, at
    # most the first one or two are mapped in (the heap grows), then reused
    assert plain > 10 * 5000
    assert applied == "True" and kept <= 2 * 10240 + 500
    assert opted_out == "False" and opted_out_faults > 10 * 5000
