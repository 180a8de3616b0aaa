"""torchrun integration: one process per device, NCCL on GPUs and Gloo on the CPU.

Launch with ``torchrun --nproc-per-node N -m training train ...``; several machines use torchrun's
standard rendezvous (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``; see the README). Without
torchrun's environment variables this is a single process and nothing is initialised.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist

from napari_chromagan.device import TorchrunEnv, rank_device, select_device, torchrun_env

__all__ = ["DistInfo", "all_reduce_flags", "cleanup", "setup"]


@dataclass(frozen=True)
class DistInfo(TorchrunEnv):
    """This process's place among torchrun's (``is_main``, ``distributed``...) and its device."""

    device: torch.device
    device_info: str


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun and pick this process's device.

    The environment and the device are :mod:`napari_chromagan.device`'s, as for ``colorize``
    under torchrun: "auto" and "cuda" mean this process's local GPU; without CUDA, "auto" is
    the CPU (Gloo), not Apple's MPS, which has no process-group backend.
    """
    env = torchrun_env()
    if not env.distributed:
        dev, info = select_device(device)
        return DistInfo(0, 1, 0, dev, info)
    name = rank_device(device, env.local_rank)
    dev, info = select_device("cpu" if name.strip().lower() == "auto" else name)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # one GPU per process
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(env.rank, env.world_size, env.local_rank, dev, info)


def cleanup(finished: bool = True) -> None:
    """Destroy the process group, on every rank together when the run ``finished``.

    Without the barrier a rank that is done first (rank 1, while rank 0 writes the last
    checkpoint) tears down its side of the Gloo connections while its peer still holds them
    open; once, in a CI run on a loaded machine, rank 1 then died at exit with "terminate called
    without an active exception" (SIGABRT; 0 in 18 runs when tried again). A barrier first is
    PyTorch's advice: destroy the group on every rank at the end. After a failure the other
    ranks may never reach a barrier, so then each rank destroys its group alone.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def all_reduce_flags(flags: list[float], info: DistInfo) -> list[float]:
    """Element-wise maximum of small per-rank flags over all ranks (identity in one process)."""
    if not info.distributed:
        return flags
    t = torch.tensor(
        flags, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu"
    )
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()
