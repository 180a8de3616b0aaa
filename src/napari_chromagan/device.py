"""What the compute device can do natively, for choices such as the default precision (no Qt)."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["available_devices", "cpu_has_native_bf16"]

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


def available_devices() -> list[str]:
    """The device choices a widget offers: auto, cpu, each CUDA device, and mps where it works."""
    import torch

    devices = ["auto", "cpu"]
    devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices
