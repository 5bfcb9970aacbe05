"""Exponential moving average of model weights (fairseq ``--store-ema`` semantics)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / DataParallel / ``torch.compile`` wrappers, so names match."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


class EMA:
    """fp32 shadow of a model's floating-point parameters and buffers.

    As in fairseq's EMA: trainable parameters are averaged, frozen parameters and buffers
    (BatchNorm statistics) are copied, and before ``start_update`` the shadow just tracks the
    weights (decay 0). Shadow tensors live on the parameters' device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, start_update: int = 0) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        model = unwrap(model)
        self.decay = decay
        self.start_update = start_update
        # named_parameters() lists the shared token embedding once
        self.params = {k: p.detach().float().clone() for k, p in model.named_parameters()}
        self.buffers = {k: b.detach().float().clone() for k, b in _float_buffers(model)}

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        """Fold the current weights in: ``shadow = d * shadow + (1 - d) * param``."""
        model = unwrap(model)
        decay = self.decay if num_updates >= self.start_update else 0.0
        avg_shadow, avg_new = [], []
        for name, p in model.named_parameters():
            shadow = self.params[name]
            if p.requires_grad and decay > 0.0:
                avg_shadow.append(shadow)
                avg_new.append(p.detach().float())
            else:
                shadow.copy_(p.detach())
        if avg_shadow:
            torch._foreach_mul_(avg_shadow, decay)
            torch._foreach_add_(avg_shadow, avg_new, alpha=1.0 - decay)
        for name, b in _float_buffers(model):
            self.buffers[name].copy_(b)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the EMA weights into ``model`` (cast to its dtypes)."""
        model = unwrap(model)
        for name, p in model.named_parameters():
            p.copy_(self.params[name])
        for name, b in _float_buffers(model):
            b.copy_(self.buffers[name])

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run a block (e.g. validation) with the EMA weights, then restore the originals."""
        model = unwrap(model)
        with torch.no_grad():
            saved = [t.detach().clone() for t in _tensors(model)]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for t, s in zip(_tensors(model), saved, strict=True):
                    t.copy_(s)

    def state_dict(self) -> dict:
        """Everything needed to resume exactly."""
        return {"decay": self.decay, "start_update": self.start_update,
                "params": dict(self.params), "buffers": dict(self.buffers)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``; the names must match this model's."""
        for key, own in (("params", self.params), ("buffers", self.buffers)):
            if set(state[key]) != set(own):
                missing = sorted(set(own) ^ set(state[key]))
                raise KeyError(f"EMA {key} do not match the model: {missing[:5]}")
            for name, t in state[key].items():
                own[name].copy_(t)
        self.decay = float(state["decay"])
        self.start_update = int(state["start_update"])


def _float_buffers(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    return ((k, b) for k, b in model.named_buffers() if b.is_floating_point())


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [p for _, p in model.named_parameters()] + [b for _, b in _float_buffers(model)]
