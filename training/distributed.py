"""torchrun integration: one process per device, NCCL on GPUs and Gloo on the CPU.

Launch with ``torchrun --nproc-per-node N -m training train ...``; several machines use torchrun's
standard rendezvous (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``; see the README). Without
torchrun's environment variables this is a single process and nothing is initialised.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from napari_chromagan.colorize import select_device

__all__ = ["DistInfo", "all_reduce_flags", "cleanup", "setup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    device_info: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1:
        wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if wants_cuda:
            # one GPU per process: "cuda" and "auto" mean this process's local GPU
            dev = torch.device("cuda", local_rank if device in ("auto", "cuda") else torch.device(device).index)
            torch.cuda.set_device(dev)
            info = f"cuda:{dev.index} ({torch.cuda.get_device_name(dev)})"
            backend = "nccl"
        else:
            dev, info = select_device("cpu" if device == "auto" else device)
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        return DistInfo(rank, world_size, local_rank, dev, info)
    dev, info = select_device(device)
    return DistInfo(0, 1, 0, dev, info)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_flags(flags: list[float], info: DistInfo) -> list[float]:
    """Element-wise maximum of small per-rank flags over all ranks (identity in one process)."""
    if not info.distributed:
        return flags
    t = torch.tensor(flags, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()
