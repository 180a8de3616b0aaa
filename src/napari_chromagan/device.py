"""The compute device: which one to use, what it can do natively, and which one a torchrun
process gets. The engine, the command line, the widgets and ``training`` all choose here.

Torch is imported inside the functions that need it, so that reading the torchrun environment
(or ``--help``) does not load it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from napari_chromagan.errors import DeviceError

if TYPE_CHECKING:
    import torch

__all__ = [
    "TorchrunEnv",
    "available_devices",
    "cpu_has_native_bf16",
    "rank_device",
    "select_device",
    "torchrun_env",
]


def select_device(device: str | torch.device = "auto") -> tuple[torch.device, str]:
    """Resolve ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") to a torch device.

    "auto" picks CUDA, then Apple MPS, then the CPU. Returns the device and a sentence saying
    which was picked and why. Raises :class:`DeviceError` for a device this machine lacks.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())
            return dev, f"{dev} ({torch.cuda.get_device_name(dev)}), picked automatically"
        if torch.backends.mps.is_available():
            return torch.device("mps"), "mps (Apple GPU), picked automatically"
        return torch.device("cpu"), "cpu, picked automatically (no CUDA or MPS device found)"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        index = 0 if dev.index is None else dev.index
        if index >= count:
            raise DeviceError(
                f"device {device!r} is not available: this machine has {count} CUDA device(s). "
                "Use device='auto' or 'cpu'."
            )
        dev = torch.device("cuda", index)
        return dev, f"{dev} ({torch.cuda.get_device_name(dev)})"
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' is not available on this machine; use 'auto' or 'cpu'")
        return dev, "mps (Apple GPU)"
    if dev.type == "cpu":
        return dev, "cpu"
    raise DeviceError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")


# ------------------------------------------------------------------------------------ torchrun


@dataclass(frozen=True)
class TorchrunEnv:
    """This process's place among torchrun's: ``RANK`` and ``WORLD_SIZE`` are global (over every
    machine of the rendezvous), ``LOCAL_RANK`` counts the processes of this machine."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, saves and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process of one
    (``TorchrunEnv(0, 1, 0)``) without torchrun.

    Raises :class:`DeviceError` when a variable is not a whole number or the three disagree
    (a rank outside the world), naming the variables as they were set.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = environ.get(name, "").strip()
        try:
            values[name] = int(text) if text else default
        except ValueError:
            raise DeviceError(f"${name} must be a whole number, got {text!r}") from None
    env = TorchrunEnv(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if env.world_size < 1 or not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise DeviceError(
            f"inconsistent torchrun environment: RANK={env.rank}, WORLD_SIZE={env.world_size}, "
            f"LOCAL_RANK={env.local_rank}"
        )
    return env


def rank_device(device: str, local_rank: int) -> str:
    """The device of the torchrun process ``local_rank``: "auto" (when CUDA exists) and "cuda"
    mean its own GPU, ``cuda:LOCAL_RANK``; any other choice stands as given."""
    if device.strip().lower() in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
    return device


# ------------------------------------------------------------------------------ capabilities

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), read from /proc/cpuinfo.

    False where the flags cannot be read (not Linux): bf16 autocast still works there, but is
    emulated and usually slower than float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in _BF16_FLAGS)
    except OSError:
        pass
    return False


def auto_uses_bf16(device: torch.device) -> bool:
    """Whether ``precision="auto"`` runs the network under bf16 autocast on ``device``.

    CUDA: yes. The CPU: where it computes bf16 natively (:func:`cpu_has_native_bf16`), because
    measured there (``bench/bench_precision.py``, 224 development photographs) bf16 stayed
    within 1.0 ΔE00 of float32 on average and 3.0 at the 99th percentile for both the default
    weights and the paper-size network, and ran 1.5-2.5x faster. MPS and other CPUs: no.
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_native_bf16()


def available_devices() -> list[str]:
    """The device choices a widget offers: auto, cpu, each CUDA device, and mps where it works."""
    import torch

    devices = ["auto", "cpu"]
    devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices
