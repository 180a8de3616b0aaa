"""Small helpers shared by the benchmarks in ``bench/``: machine info, timing, JSON, tables."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "foreign_cpu_seconds",
    "host_tag",
    "machine_info",
    "peak_rss_kib",
    "peak_rss_reset",
    "print_table",
    "rss_kib",
    "timeit",
    "timeit_interleaved",
    "write_json_atomic",
]


def _cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is often empty or just 'x86_64' on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def host_tag() -> str:
    """The hostname reduced to [A-Za-z0-9.-], or 'local' when there is none."""
    name = "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in socket.gethostname())
    return name.strip(".-") or "local"


def machine_info() -> dict[str, Any]:
    """What the timings depend on: keep it next to every result."""
    import numpy as np
    import torch

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def foreign_cpu_seconds() -> float | None:
    """CPU seconds used so far by everything on this machine except this process (Linux only).

    Busy and steal time from ``/proc/stat`` minus this process's own CPU time: the difference
    over an interval says how much other processes (or other VMs, via steal) competed for the
    cores while a sample ran. None where ``/proc/stat`` is not available.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    own = os.times()
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK") - (
        own.user + own.system
    )


def timeit(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timeit_interleaved(
    fns: Mapping[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, list[float | None]]]:
    """Time several functions round-robin: each round runs every ``fn`` once, in order.

    Returns ``(seconds, foreign)``: every sample's wall time per name, and the share of the
    machine's cores that other processes used during it (0 = none, 1 = all; None if unknown).
    Interleaving spreads slow drifts and bursts of load over all cases alike.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    ncpu = os.cpu_count() or 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    foreign: dict[str, list[float | None]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            f0 = foreign_cpu_seconds()
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            f1 = foreign_cpu_seconds()
            samples[name].append(elapsed)
            share = None if f0 is None or f1 is None else max(0.0, (f1 - f0) / (elapsed * ncpu))
            foreign[name].append(share)
    return samples, foreign


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private; results are for sharing
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` (dicts) as a plain-text table with the given ``columns``; floats to 2 dp."""

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    cells = [[fmt(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]

    # first column left-aligned (labels), the others right-aligned (numbers)
    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    print(line(columns))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print(line(r))


def rss_kib() -> int:
    """This process's resident set size now, in KiB (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so that what follows is measured alone (Linux);
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int | None:
    """This process's peak RSS (VmHWM) in KiB since start or :func:`peak_rss_reset`; None if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
