"""EMA of model weights: formula, start_update, exact resume, swapping."""

import io

import torch
from torch import nn

from ofa.train.ema import EMA


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)


def set_weights(model: Tiny, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
        model.bn.running_mean.fill_(value)


def test_update_formula_by_hand():
    model = Tiny()
    set_weights(model, 1.0)
    ema = EMA(model, decay=0.9)
    set_weights(model, 2.0)
    ema.update(model, num_updates=1)
    # 0.9 * 1 + 0.1 * 2 for trainable parameters; frozen ones and buffers are copied
    assert torch.allclose(ema.params["lin.weight"], torch.full((2, 3), 1.1))
    assert torch.allclose(ema.params["bn.bias"], torch.full((2,), 1.1))
    assert torch.equal(ema.params["frozen"], torch.full((2,), 2.0))
    assert torch.equal(ema.buffers["bn.running_mean"], torch.full((2,), 2.0))
    set_weights(model, 0.0)
    ema.update(model, num_updates=2)
    assert torch.allclose(ema.params["lin.weight"], torch.full((2, 3), 0.99))


def test_start_update_copies_weights_before():
    model = Tiny()
    set_weights(model, 1.0)
    ema = EMA(model, decay=0.5, start_update=3)
    for u, value in ((1, 2.0), (2, 4.0)):
        set_weights(model, value)
        ema.update(model, num_updates=u)
        assert torch.equal(ema.params["lin.weight"], torch.full((2, 3), value))
    set_weights(model, 8.0)
    ema.update(model, num_updates=3)
    assert torch.equal(ema.params["lin.weight"], torch.full((2, 3), 6.0))


def test_fp32_shadow_of_half_model():
    model = Tiny().to(torch.bfloat16)
    ema = EMA(model, decay=0.999)
    assert all(t.dtype == torch.float32 for t in ema.params.values())
    ema.copy_to(model)
    assert model.lin.weight.dtype == torch.bfloat16


def test_state_dict_round_trip_resumes_exactly():
    torch.manual_seed(0)
    model = Tiny()
    ema = EMA(model, decay=0.7, start_update=1)

    def perturb_and_update(e: EMA, u: int) -> None:
        torch.manual_seed(u)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        e.update(model, u)

    for u in range(3):
        perturb_and_update(ema, u)
    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}

    resumed = EMA(Tiny(), decay=0.1)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf))
    assert resumed.decay == 0.7 and resumed.start_update == 1
    for u in range(3, 6):
        perturb_and_update(ema, u)
    model.load_state_dict(snapshot)
    for u in range(3, 6):
        perturb_and_update(resumed, u)
    for key in ema.params:
        assert torch.equal(ema.params[key], resumed.params[key])
    for key in ema.buffers:
        assert torch.equal(ema.buffers[key], resumed.buffers[key])


def test_swapped_restores_exactly():
    torch.manual_seed(1)
    model = Tiny()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.bn.running_var.fill_(3.0)
    ema.update(model, 1)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped(model) as m:
        assert m is model
        assert torch.equal(model.lin.weight, ema.params["lin.weight"])
        assert not torch.equal(model.lin.weight, original["lin.weight"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_swapped_restores_after_error_and_unwraps_dataparallel():
    model = Tiny()
    ema = EMA(nn.DataParallel(model), decay=0.5)
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    original = model.lin.weight.clone()
    try:
        with ema.swapped(nn.DataParallel(model)):
            raise RuntimeError("validation failed")
    except RuntimeError:
        pass
    assert torch.equal(model.lin.weight, original)
    compiled = nn.Module()
    compiled._orig_mod = model  # what torch.compile's OptimizedModule holds
    assert list(EMA(compiled).params) == list(ema.params)
