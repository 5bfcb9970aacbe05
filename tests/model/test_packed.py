"""oneDNN-packed linear weights for CPU inference: same products as F.linear, never stale,
off under autograd and where switched off, and a model still copies and pickles."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ofa.model import OFAModel, packed
from ofa.model.packed import linear, packed_weights, packing_available, steady_weights

from conftest import text_batch, tiny_config

pytestmark = pytest.mark.skipif(not packing_available(), reason="no oneDNN in this torch build")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 5, 37])
def test_packed_linear_computes_f_linear(dtype, rows):
    torch.manual_seed(0)
    layer = nn.Linear(64, 96).to(dtype)
    x = torch.randn(2, rows, 64).to(dtype)
    with torch.no_grad():
        out = linear(layer, x)
        ref = F.linear(x, layer.weight, layer.bias)
    assert "_ofa_packed" in layer.__dict__  # the packed path ran
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


def test_a_changed_weight_is_packed_again():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    x = torch.randn(3, 16)
    with torch.no_grad():
        linear(layer, x)
        layer.weight.mul_(2)  # in place: the version counter moves
        torch.testing.assert_close(linear(layer, x), F.linear(x, layer.weight, layer.bias))
        layer.weight = nn.Parameter(torch.randn(8, 16))  # another tensor
        torch.testing.assert_close(linear(layer, x), F.linear(x, layer.weight, layer.bias))
        layer.to(torch.bfloat16)  # the same parameters, their .data swapped
        xb = x.bfloat16()
        torch.testing.assert_close(linear(layer, xb), F.linear(xb, layer.weight, layer.bias))


def test_a_model_made_under_inference_mode_packs():
    with torch.inference_mode():  # inference tensors keep no version counter
        layer = nn.Linear(16, 8)
        x = torch.randn(3, 16)
        torch.testing.assert_close(linear(layer, x), F.linear(x, layer.weight, layer.bias))


def test_autograd_and_the_switch_take_the_plain_path():
    layer = nn.Linear(16, 8)
    x = torch.randn(3, 16)
    y = linear(layer, x)  # grad enabled: F.linear, gradients flow
    y.sum().backward()
    assert layer.weight.grad is not None and "_ofa_packed" not in layer.__dict__
    with torch.no_grad(), packed_weights(False):
        linear(layer, x)
    assert "_ofa_packed" not in layer.__dict__


def test_model_outputs_and_copies_with_packed_weights():
    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    ids, images = text_batch([7, 5]), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with packed_weights(False):
            ref = model.decode(ids[:, :4], model.encode(ids, images))
        out = model.decode(ids[:, :4], model.encode(ids, images))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert "_ofa_packed" in model.__dict__  # the output table too
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert not clone.__dict__.get("_ofa_packed")
        with torch.no_grad():
            torch.testing.assert_close(clone.decode(ids[:, :4], clone.encode(ids, images)), out)


def test_bf16_on_a_cpu_oneDNN_cannot_pack_it_for_takes_the_plain_path():
    """On an AVX2-only CPU oneDNN has no bf16 reorder (it raises); the linear must not try it.
    ``ONEDNN_MAX_CPU_ISA=AVX2`` makes this CPU look so to oneDNN (read at start: a subprocess)."""
    code = (
        "import torch, torch.nn.functional as F\n"
        "from torch import nn\n"
        "from ofa.model.packed import linear\n"
        "layer = nn.Linear(64, 32).to(torch.bfloat16)\n"
        "x = torch.randn(5, 64, dtype=torch.bfloat16)\n"
        "with torch.no_grad():\n"
        "    assert torch.equal(linear(layer, x), F.linear(x, layer.weight, layer.bias))\n"
        "print('ok')\n")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_steady_weights_check_once_a_block(monkeypatch):
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    x = torch.randn(1, 2, 8)
    checks = []
    real = packed.same_tensors
    monkeypatch.setattr(packed, "same_tensors", lambda *a: checks.append(1) or real(*a))
    with torch.no_grad():
        linear(layer, x)  # packs
        linear(layer, x)
        assert len(checks) == 1  # outside a block: every use checks
        with steady_weights():
            first = linear(layer, x)
            for _ in range(3):
                linear(layer, x)
            assert len(checks) == 2  # once in the block
            with steady_weights():  # a nested block checks again, once
                linear(layer, x)
                linear(layer, x)
            assert len(checks) == 3
        # changed between two blocks (SCST: generate, update, generate): packed again
        layer.weight.mul_(2.0)
        with steady_weights():
            second = linear(layer, x)
    torch.testing.assert_close(second - layer.bias, 2 * (first - layer.bias))


def test_steady_weights_hold_for_their_own_thread_only():
    import threading

    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    x = torch.randn(1, 2, 8)
    outside = []
    with torch.no_grad(), steady_weights():
        linear(layer, x)

        def other_thread():  # not in a block: it sees its own change at once
            with torch.no_grad():
                layer.weight.add_(1.0)
                outside.append(linear(layer, x))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    torch.testing.assert_close(outside[0], F.linear(x, layer.weight, layer.bias))
