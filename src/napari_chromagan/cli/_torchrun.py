"""``colorize`` under torchrun: the environment, each process's share of the files, its GPU,
and the temporary files an interrupted run left behind."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from napari_chromagan.atomic import remove_stale_parts
from napari_chromagan.cli._common import _UsageError

_T = TypeVar("_T")


def _torchrun_env() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as torchrun sets them; ``(0, 1, 0)`` without torchrun.

    The same variables as ``training/distributed.py`` reads, but no process group is set up:
    the processes share no tensors, so plain torchrun (one machine or several through its
    rendezvous, where RANK and WORLD_SIZE are global) is all it takes.
    """
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, "").strip()
        try:
            values[name] = int(text) if text else default
        except ValueError:
            raise _UsageError(f"${name} must be a whole number, got {text!r}") from None
    rank, world_size, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise _UsageError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}, "
            f"LOCAL_RANK={local_rank}"
        )
    return rank, world_size, local_rank


def shard(items: Sequence[_T], rank: int, world_size: int) -> list[_T]:
    """This process's share of `items`: those at positions ``i % world_size == rank``.

    Every process computes the same input list from the same arguments, so the shares are
    disjoint, cover all items and differ in size by at most one, with no communication.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def _rank_device(device: str, local_rank: int) -> str:
    """Under torchrun, "auto" (when CUDA exists) and "cuda" mean this process's local GPU."""
    if device.strip().lower() in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
    return device


def _remove_stale_parts(targets: Sequence[Path]) -> int:
    """Remove temporary files a killed run left next to `targets`; return how many."""
    by_folder: dict[Path, set[str]] = {}
    for t in targets:
        by_folder.setdefault(t.parent, set()).add(t.name)
    return sum(remove_stale_parts(folder, names)[0] for folder, names in by_folder.items())
