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
    "baseline_checks",
    "fill_defaults",
    "foreign_cpu_seconds",
    "host_tag",
    "loadavg",
    "machine_info",
    "max_ab_diff",
    "peak_rss_kib",
    "peak_rss_reset",
    "print_table",
    "quiet_rounds",
    "quiet_samples",
    "results_path",
    "rss_kib",
    "timeit",
    "timeit_interleaved",
    "write_json_atomic",
    "write_result_in",
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


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the platform has none."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def fill_defaults(args: Any, defaults: Mapping[str, Any]) -> None:
    """Set each attribute of ``args`` named in ``defaults`` that is still None to its default."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def results_path(prefix: str, quick: bool = False) -> Path:
    """``bench/results/<prefix>-<host>-<YYYYMMDD>[-quick].json``: where a run's JSON goes."""
    stamp = _dt.date.today().strftime("%Y%m%d")
    suffix = "-quick" if quick else ""
    return (
        Path(__file__).resolve().parent / "results" / f"{prefix}-{host_tag()}-{stamp}{suffix}.json"
    )


def write_result_in(folder: Path, prefix: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``folder/<prefix>-<YYYYMMDD>-<host>.json``, dated by its machine info.

    ``payload["machine"]`` is :func:`machine_info`'s dict; prints and returns the path.
    """
    path = folder / f"{prefix}-{payload['machine']['date'][:10].replace('-', '')}-{host_tag()}.json"
    write_json_atomic(path, payload)
    print(f"wrote {path}")
    return path


def baseline_checks(baseline: Any, engine: Any) -> tuple[bool, bool]:
    """Whether the eager ``baseline`` module holds the engine's weights, in contiguous NCHW layout.

    Returns ``(same_weights, contiguous)``; raises RuntimeError unless both hold, since every
    ratio against the baseline assumes them.
    """
    import torch

    same_weights = all(
        torch.equal(a.cpu(), b.cpu())
        for a, b in zip(
            baseline.state_dict().values(), engine.generator.state_dict().values(), strict=True
        )
    )
    contiguous = all(p.is_contiguous() for p in baseline.parameters())
    if not (same_weights and contiguous):
        raise RuntimeError("the baseline must be the same weights in contiguous NCHW layout")
    return same_weights, contiguous


def max_ab_diff(baseline: Any, engine: Any, x: Any) -> float:
    """Same weights, same answer: the largest |a*b*| difference, engine against the eager
    baseline on the network input ``x`` (Lab units)."""
    import torch

    with torch.no_grad():
        ab_base, _ = baseline(x)
    ab_engine, _ = engine.predict(x, with_class=False)
    return float((ab_base.float() * 255.0 - 128.0 - ab_engine).abs().max())


def quiet_samples(
    samples: Sequence[float], foreign: Sequence[float | None], limit: float
) -> tuple[list[float], str]:
    """The samples taken while other processes used at most ``limit`` of the cores, or all of
    them when none was; and "quiet/total" for the record.

    Setting loaded samples aside matters on a 2-core machine shared with test runs, which is
    otherwise measuring the neighbours.
    """
    quiet = [t for t, f in zip(samples, foreign, strict=True) if f is not None and f <= limit]
    return quiet or list(samples), f"{len(quiet)}/{len(samples)}"


def quiet_rounds(
    foreign: Mapping[str, Sequence[float | None]], max_foreign: float
) -> tuple[list[int], str]:
    """Rounds in which every case ran while other processes were quiet; all rounds if none were.

    Choosing whole rounds keeps the cases comparable: a quiet sample of one case is never set
    against a loaded sample of another. Also returns "quiet/total" for the record.
    """
    n = len(next(iter(foreign.values())))
    quiet = [
        i
        for i in range(n)
        if all(f[i] is not None and f[i] <= max_foreign for f in foreign.values())
    ]
    return quiet or list(range(n)), f"{len(quiet)}/{n}"


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
