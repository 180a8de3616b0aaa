"""``colorize`` under torchrun: each process's share of the files and the temporary files an
interrupted run left behind. The environment and each process's GPU are
:mod:`napari_chromagan.device`'s, as for training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from napari_chromagan.cli._common import _UsageError
from napari_chromagan.device import torchrun_env
from napari_chromagan.errors import DeviceError
from napari_chromagan.files.atomic import remove_stale_parts

_T = TypeVar("_T")


def _torchrun_env() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` (:func:`napari_chromagan.device.torchrun_env`).

    No process group is set up: the processes share no tensors, so plain torchrun (one machine
    or several through its rendezvous, where RANK and WORLD_SIZE are global) is all it takes.
    A malformed environment is a usage error.
    """
    try:
        env = torchrun_env()
    except DeviceError as exc:
        raise _UsageError(str(exc)) from None
    return env.rank, env.world_size, env.local_rank


def shard(items: Sequence[_T], rank: int, world_size: int) -> list[_T]:
    """This process's share of `items`: those at positions ``i % world_size == rank``.

    Every process computes the same input list from the same arguments, so the shares are
    disjoint, cover all items and differ in size by at most one, with no communication.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def _remove_stale_parts(targets: Sequence[Path]) -> int:
    """Remove temporary files a killed run left next to `targets`; return how many."""
    by_folder: dict[Path, set[str]] = {}
    for t in targets:
        by_folder.setdefault(t.parent, set()).add(t.name)
    return sum(remove_stale_parts(folder, names)[0] for folder, names in by_folder.items())
