"""The cases of ``bench_inference.py``: throughput per batch size, and one end-to-end case.

Throughput: the eager baseline against ``Colorizer.predict`` at one batch size, round-robin.

End to end: one ``Colorizer.colorize`` case in this process. Each case runs in a fresh
interpreter (``bench_inference.py --case-json ...``), so that its peak memory is its own: the
memory of the first and the second call, the staged run (the engine's steps timed through its
public pipeline) checked against ``colorize``'s output, then ``colorize``, the staged run and
one 224 plane through ``predict`` timed round-robin.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import (
    baseline_checks,
    max_ab_diff,
    peak_rss_kib,
    peak_rss_reset,
    quiet_rounds,
    rss_kib,
    timeit_interleaved,
)

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.progress import run_events

STAGES = ("normalise", "resize", "network", "full_resolution")
BATCH_SIZE = 8  # colorize's default


def median_at(values: list[float], rounds: list[int]) -> float:
    return statistics.median(values[i] for i in rounds)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def synthetic(shape: tuple[int, ...], dtype: np.dtype, seed: int) -> np.ndarray:
    """Smooth gradients plus noise over the dtype's range, built in row strips (low peak memory)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    high = np.iinfo(dtype).max
    H, W = shape[-2:]
    out = np.empty(shape, dtype)
    flat = out.reshape(-1, H, W)
    x = np.arange(W, dtype=np.float32) / W
    for plane in flat:
        fx, fy = rng.uniform(1, 6, 2)
        for r0 in range(0, H, 256):
            y = (np.arange(r0, min(H, r0 + 256), dtype=np.float32) / H)[:, None]
            v = 0.5 + 0.25 * np.sin(2 * np.pi * fx * x) * np.cos(2 * np.pi * fy * y) + 0.2 * x
            v = v + 0.05 * rng.standard_normal(v.shape, dtype=np.float32)
            plane[r0 : r0 + 256] = (np.clip(v, 0, 1) * high).astype(dtype)
    return out


# ----------------------------------------------------------------------------- throughput


def build_models(args: argparse.Namespace, device: torch.device) -> tuple[Any, Colorizer]:
    """The eager baseline and the engine, the same seeded weights in both."""
    torch.manual_seed(args.seed)
    generator = Generator(ModelConfig(width=args.width)).eval()
    # The baseline keeps its own copy in PyTorch's default layout (Colorizer converts in place).
    baseline = copy.deepcopy(generator).eval().to(device)
    # float32, like the eager baseline, so that the colours can be compared: bf16 (precision
    # "auto" on CUDA and on CPUs with native bf16) is bench_precision.py's measurement
    engine = Colorizer(generator, device=device, precision="fp32")
    return baseline, engine


def time_batch(
    args: argparse.Namespace, baseline: Any, engine: Colorizer, bs: int, size: int
) -> dict[str, Any]:
    """One batch size, eager against the engine round-robin: one row of the throughput table."""
    device = torch.device(args.device)
    sync = synchronizer(device)
    min_images = 4 if args.quick else 16  # each sample covers at least this many images
    x = torch.rand(bs, 1, size, size, device=device)
    calls = max(1, math.ceil(min_images / bs))

    def eager() -> None:
        with torch.no_grad():
            for _ in range(calls):
                _ab, _probs = baseline(x)  # what a user writes: ab, probs = generator(x)
        sync()

    def fast() -> None:
        for _ in range(calls):
            engine.predict(x, with_class=False)
        sync()

    samples, foreign = timeit_interleaved(
        {"eager": eager, "engine": fast}, repeats=args.repeats, warmup=args.warmup
    )
    rounds, quiet = quiet_rounds(foreign, args.max_foreign)
    t_eager = median_at(samples["eager"], rounds)
    t_fast = median_at(samples["engine"], rounds)
    images = calls * bs
    return {
        "batch": bs,
        "images_per_sample": images,
        "eager img/s": images / t_eager,
        "engine img/s": images / t_fast,
        "x vs eager": t_eager / t_fast,
        "eager ms/call": 1000.0 * t_eager / calls,
        "engine ms/call": 1000.0 * t_fast / calls,
        "quiet": quiet,
        "samples_s": samples,
        "foreign_load": foreign,
    }


def bench_throughput(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    device = torch.device(args.device)
    baseline, engine = build_models(args, device)
    S = engine.generator.config.image_size
    same_weights, contiguous = baseline_checks(baseline, engine)
    x_check = torch.rand(2, 1, S, S, device=device)
    ab_diff = max_ab_diff(baseline, engine, x_check)

    rows = []
    for bs in args.batch_sizes:
        t0 = time.perf_counter()
        row = time_batch(args, baseline, engine, bs, S)
        rows.append(row)
        print(
            f"  batch {bs}: eager {row['eager img/s']:.1f} img/s, engine {row['engine img/s']:.1f} "
            f"img/s ({row['x vs eager']:.2f}x) in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    checks = {
        "same_weights": same_weights,
        "baseline_contiguous_nchw": contiguous,
        "max_abs_ab_diff_engine_vs_baseline_lab": ab_diff,
    }
    if 1 in args.batch_sizes:
        bs1 = next(r for r in rows if r["batch"] == 1)
        checks["latency_bs1_ms"] = {"eager": bs1["eager ms/call"], "engine": bs1["engine ms/call"]}
    return rows, checks


# ----------------------------------------------------------------------------- end to end (child)


def staged_colorize(
    engine: Colorizer, image: np.ndarray, batch_size: int, sync: Callable[[], None]
) -> tuple[np.ndarray, np.ndarray, dict[str, float], float]:
    """``engine.colorize(image, with_class=False)`` through the public pipeline, its steps timed.

    Drives :meth:`Colorizer.iter_colorize` with a ``phase`` hook that synchronises the device
    and charges the time since the previous mark to the step that just ended (so the time
    between two steps, such as allocating the outputs, goes to the later one). Returns rgb, ab,
    the seconds per stage and the total.
    """
    clock = time.perf_counter
    t = dict.fromkeys(STAGES, 0.0)
    last = [clock()]

    def phase(name: str) -> None:
        sync()
        now = clock()
        t[name] += now - last[0]
        last[0] = now

    start = last[0] = clock()
    result = run_events(
        engine.iter_colorize(image, batch_size=batch_size, with_class=False, phase=phase)
    )
    total = clock() - start
    if result.missing is not None:
        raise ValueError("the benchmark's images have no missing (NaN) pixels")
    return result.rgb, result.ab, t, total


def first_call_memory(
    engine: Colorizer, image: np.ndarray, device: torch.device
) -> tuple[Any, float, dict[str, Any]]:
    """Peak memory of the first call (what a user's first colourisation costs, warm-up included).

    Returns the result, the call's seconds and the memory record.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    # ru_maxrss of a fresh interpreter can hold the parent's peak (inherited at fork) or the
    # model build's; resetting the high-water mark first makes it this call's alone (Linux).
    hwm_reset = peak_rss_reset()
    rss_before = rss_kib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    first = engine.colorize(image, batch_size=BATCH_SIZE, with_class=False)
    first_s = time.perf_counter() - t0
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = peak_rss_kib() if hwm_reset else None
    peak = hwm if hwm is not None else maxrss_after
    memory = {
        "rss_before_mib": rss_before / 1024,
        "peak_rss_growth_mib": (peak - rss_before) / 1024,
        "peak_source": "VmHWM after clear_refs" if hwm is not None else "ru_maxrss",
        "ru_maxrss_before_mib": maxrss_before / 1024,
        "ru_maxrss_after_mib": maxrss_after / 1024,
        # False: ru_maxrss was already higher before the call, so it says nothing about the call
        "ru_maxrss_rose": maxrss_after > maxrss_before,
        "output_arrays_mib": (first.rgb.nbytes + first.L.nbytes + first.ab.nbytes) / 2**20,
        "input_mib": image.nbytes / 2**20,
    }
    if device.type == "cuda":
        memory["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        memory["cuda_max_allocated_growth_mib"] = (
            torch.cuda.max_memory_allocated(device) - cuda_before
        ) / 2**20
    return first, first_s, memory


def second_call(engine: Colorizer, image: np.ndarray, memory: dict[str, Any]) -> Any:
    """The steady state: a second call, its peak alone (VmHWM reset; Linux only), recorded in
    ``memory``; returns its result."""
    if peak_rss_reset():
        rss_before2 = rss_kib()
        again = engine.colorize(image, batch_size=BATCH_SIZE, with_class=False)
        hwm = peak_rss_kib()
        if hwm is not None:
            memory["second_call_peak_rss_growth_mib"] = (hwm - rss_before2) / 1024
        return again
    return engine.colorize(image, batch_size=BATCH_SIZE, with_class=False)


def staged_matches(
    engine: Colorizer, image: np.ndarray, reference: Any, device: torch.device
) -> dict[str, Any]:
    """The staged run must reproduce colorize's output (``reference``): exactly on the CPU."""
    rgb, ab, _, _ = staged_colorize(engine, image, BATCH_SIZE, synchronizer(device))
    rgb_diff = int(np.abs(rgb.astype(np.int16) - reference.rgb.astype(np.int16)).max())
    ab_diff = float(np.abs(ab - reference.ab).max())
    exact = device.type == "cpu"
    matched = rgb_diff == 0 and ab_diff == 0.0 if exact else rgb_diff <= 1 and ab_diff <= 0.05
    return {
        "staged_matches_colorize": bool(matched),
        "staged_vs_colorize_max_diff": {"rgb": rgb_diff, "ab": ab_diff, "exact_required": exact},
    }


def time_end_to_end(
    engine: Colorizer, image: np.ndarray, args: argparse.Namespace, image_size: int
) -> dict[str, Any]:
    """``colorize``, the staged run and 5 calls of ``predict`` on one plane, round-robin: the
    medians over the quiet rounds, the breakdown into stages, and the raw samples."""
    sync = synchronizer(torch.device(args.device))
    x1 = torch.rand(1, 1, image_size, image_size)
    calls1 = 5
    staged_times: list[dict[str, float]] = []

    def colorize() -> None:
        engine.colorize(image, batch_size=BATCH_SIZE, with_class=False)

    def staged() -> None:
        _rgb, _ab, t, total = staged_colorize(engine, image, BATCH_SIZE, sync)
        staged_times.append({**t, "total": total})

    def predict1() -> None:
        for _ in range(calls1):
            engine.predict(x1, with_class=False)
        sync()

    samples, foreign = timeit_interleaved(
        {"colorize": colorize, "staged": staged, "predict1": predict1},
        repeats=args.e2e_repeats,
        warmup=args.warmup,
    )
    staged_times = staged_times[args.warmup :]
    rounds, quiet = quiet_rounds(foreign, args.max_foreign)
    t_colorize = median_at(samples["colorize"], rounds)
    use = [staged_times[i] for i in rounds]
    stages = {k: statistics.median(s[k] for s in use) for k in (*STAGES, "total")}
    breakdown = {k: stages[k] for k in STAGES}
    breakdown["remainder"] = t_colorize - sum(breakdown.values())
    return {
        "colorize_s": t_colorize,
        "quiet": quiet,
        "staged_total_s": stages["total"],
        "breakdown_s": breakdown,
        "breakdown_share": {k: v / t_colorize for k, v in breakdown.items()},
        "predict_1x224_s": median_at(samples["predict1"], rounds) / calls1,
        "samples_s": samples,
        "foreign_load": foreign,
        "staged_samples_s": staged_times,
    }


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One end-to-end case in this process: memory of the first colorize, then timings."""
    device = torch.device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    config = ModelConfig(width=args.width)
    engine = Colorizer(Generator(config).eval(), device=device)
    shape = tuple(int(v) for v in args.case_shape.split("x"))
    image = synthetic(shape, np.dtype(args.case_dtype), args.seed)
    gc.collect()

    first, first_s, memory = first_call_memory(engine, image, device)
    del first
    gc.collect()
    again = second_call(engine, image, memory)
    match = staged_matches(engine, image, again, device)
    del again
    gc.collect()

    timings = time_end_to_end(engine, image, args, config.image_size)
    return {
        "shape": list(shape),
        "dtype": args.case_dtype,
        "planes": math.prod(shape[:-2]),
        "batch_size": BATCH_SIZE,
        "first_call_s": first_s,
        "colorize_s": timings["colorize_s"],
        "quiet": timings["quiet"],
        "staged_total_s": timings["staged_total_s"],
        "breakdown_s": timings["breakdown_s"],
        "breakdown_share": timings["breakdown_share"],
        "predict_1x224_s": timings["predict_1x224_s"],
        **match,
        "memory": memory,
        "samples_s": timings["samples_s"],
        "foreign_load": timings["foreign_load"],
        "staged_samples_s": timings["staged_samples_s"],
    }
