"""Optimizer, learning-rate schedule, gradient clipping and freezing for OFA training.

Official settings (OFA-Sys/OFA ``run_scripts/*/train_*.sh``): Adam(W) with betas (0.9, 0.999),
eps 1e-8, weight decay 0.01, fairseq's ``polynomial_decay`` schedule with linear warmup (here
with optional warm restarts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

# Only the weight matrices/kernels of these modules are decayed.
DECAYED_MODULES = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed and a non-decayed group (each listed once)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            # the token embedding is shared by encoder and decoder: count it once
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "weight" and isinstance(module, DECAYED_MODULES) and p.ndim > 1:
                decay.append(p)
            else:  # biases, LayerNorm/BatchNorm affine, c_attn, any other 1-D parameter
                no_decay.append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01,
                    betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (frozen ones are left out).

    Deliberate deviation: fairseq's ``adam`` (used by OFA) decays every parameter; we follow
    common practice and exempt biases, norm weights, ``c_attn`` and all 1-D parameters. Both
    use decoupled decay (``p -= lr * wd * p``), so only the exempt set differs.
    """
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def warmup_updates_from_ratio(ratio: float, total_updates: int) -> int:
    """Warmup length of OFA's ``--warmup-ratio``: ``int(ratio * total_updates)``."""
    return int(ratio * total_updates)


def polynomial_decay_lr(num_updates: int, peak_lr: float, warmup_updates: int,
                        total_updates: int, end_lr: float = 0.0, power: float = 1.0) -> float:
    """fairseq ``polynomial_decay`` learning rate after ``num_updates`` updates.

    Warmup goes linearly from 0 (fairseq calls ``step_update(0)`` when the trainer starts, so
    the very first update runs at lr 0) to ``peak_lr`` at ``warmup_updates``; then
    ``(peak - end) * (1 - progress) ** power + end``; ``end_lr`` from ``total_updates`` on.
    """
    if warmup_updates > 0 and num_updates <= warmup_updates:
        return peak_lr * num_updates / warmup_updates
    if num_updates >= total_updates:
        return end_lr
    remaining = 1 - (num_updates - warmup_updates) / (total_updates - warmup_updates)
    return (peak_lr - end_lr) * remaining**power + end_lr


class Restart(NamedTuple):
    """A warm restart: from ``update`` the lr warms up again from 0 to ``scale`` x the peak lr
    over ``warmup_updates`` and decays to ``end_lr`` at ``decay_updates`` (default
    ``total_updates``)."""

    update: int
    scale: float
    warmup_updates: int
    decay_updates: int | None = None


def restarted_lr(num_updates: int, peak_lr: float, warmup_updates: int, total_updates: int,
                 end_lr: float = 0.0, power: float = 1.0,
                 restarts: Sequence[Restart] = (), decay_updates: int | None = None) -> float:
    """``polynomial_decay_lr`` until the first restart, then the last restart begun rules.

    Before a restart the schedule is the one without it, so a run branched from an earlier
    checkpoint of the same schedule continues it exactly. The first decay ends at
    ``decay_updates`` (default ``total_updates``), each restart's at its own
    ``decay_updates`` (default ``total_updates``): a run that trains on past its last restart
    adds one more and leaves the earlier updates as they were.
    """
    begun = [r for r in restarts if r.update <= num_updates]
    if not begun:
        return polynomial_decay_lr(num_updates, peak_lr, warmup_updates,
                                   decay_updates or total_updates, end_lr, power)
    last = begun[-1]
    return polynomial_decay_lr(num_updates - last.update, peak_lr * last.scale,
                               last.warmup_updates,
                               (last.decay_updates or total_updates) - last.update, end_lr, power)


class PolynomialDecaySchedule(LRScheduler):
    """``restarted_lr`` per param group, peak = the group's initial lr.

    Call ``step()`` once after every optimizer update (not per micro-batch); ``last_epoch`` is
    then the number of updates done and the lr is the one the next update uses.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_updates: int,
                 total_updates: int, end_lr: float = 0.0, power: float = 1.0,
                 last_epoch: int = -1, restarts: Sequence[Restart] = (),
                 decay_updates: int | None = None) -> None:
        bad_decay = decay_updates is not None and decay_updates <= 0
        if total_updates <= 0 or warmup_updates < 0 or bad_decay:
            raise ValueError(f"need total_updates > 0, decay_updates > 0 and warmup_updates "
                             f">= 0, got {total_updates}, {decay_updates}, {warmup_updates}")
        starts = [r.update for r in restarts]
        if starts != sorted(set(starts)) or any(not 0 < u < total_updates for u in starts):
            raise ValueError(f"restart updates must increase and lie in (0, {total_updates}), "
                             f"got {starts}")
        self.warmup_updates = warmup_updates
        self.total_updates = total_updates
        self.decay_updates = decay_updates
        self.end_lr = end_lr
        self.power = power
        self.restarts = [Restart(*r) for r in restarts]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [restarted_lr(self.last_epoch, float(base), self.warmup_updates,
                             self.total_updates, self.end_lr, self.power, self.restarts,
                             self.decay_updates)
                for base in self.base_lrs]

    _get_closed_form_lr = get_lr

    # A checkpoint keeps only where the run is in the schedule. The schedule's shape (peak,
    # warmup, lengths, restarts) comes from the config, so a branch that adds a restart, or a
    # run resumed with a larger ``max_updates``, follows the new schedule instead of the old.
    _position = ("last_epoch", "_step_count")

    def state_dict(self) -> dict:
        return {k: self.__dict__[k] for k in self._position}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update({k: state_dict[k] for k in self._position})


def polynomial_decay_schedule(optimizer: torch.optim.Optimizer, warmup_updates: int,
                              total_updates: int, end_lr: float = 0.0, power: float = 1.0,
                              restarts: Sequence[Restart] = (),
                              decay_updates: int | None = None) -> PolynomialDecaySchedule:
    """Factory spelling of ``PolynomialDecaySchedule`` (same arguments)."""
    return PolynomialDecaySchedule(optimizer, warmup_updates, total_updates, end_lr, power,
                                   restarts=restarts, decay_updates=decay_updates)


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Total L2 norm of the gradients, clipping them to ``max_norm`` when it is > 0.

    The norm is returned even without clipping (fairseq's ``--clip-norm 0``); it can be inf/nan
    after an fp16 overflow, which the caller must check before stepping.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return float(norm)


def _freeze(params: Iterable[nn.Parameter]) -> int:
    count, seen = 0, set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            p.requires_grad_(False)
            count += p.numel()
    return count


def freeze(model: nn.Module, embeddings: bool = False, resnet: bool = False,
           batchnorm: bool = False) -> int:
    """Freeze parts of an (unwrapped) ``OFAModel``; returns the number of frozen scalars.

    ``embeddings``: the shared token embedding (official ``--freeze-encoder-embedding
    --freeze-decoder-embedding``). ``resnet``: every ResNet backbone parameter. ``batchnorm``:
    only the backbone's BatchNorm affine parameters, which with ``set_batchnorm_eval`` matches
    the official ``--freeze-resnet`` (FrozenBatchNorm2d; the convolutions keep training).
    Call before building the optimizer and before wrapping the model in DDP.
    """
    backbone = model.encoder.embed_images
    params: list[nn.Parameter] = []
    if embeddings:
        params.append(model.embed_tokens.weight)
    if resnet:
        params.extend(backbone.parameters())
    if batchnorm:
        for m in backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                params.extend(m.parameters())
    return _freeze(params)


def set_batchnorm_eval(module: nn.Module) -> int:
    """Put every BatchNorm of ``module`` in eval mode (fixed running statistics).

    ``model.train()`` switches them back, so call it after every ``train()``; returns the count.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            count += 1
    return count
