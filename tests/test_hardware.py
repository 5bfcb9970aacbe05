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
