"""Process-group setup from the variables ``torchrun`` sets (one process: nothing to do)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("device cuda requested but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise InputError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def init_distributed(device: str = "auto", timeout_minutes: float = 30) -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set): NCCL on GPUs,
    gloo on CPUs. A plain ``python`` launch is a world of one. ``timeout_minutes`` bounds how
    long a collective waits for the slowest process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistInfo(rank, world, local, dev)


def all_reduce_sum(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
