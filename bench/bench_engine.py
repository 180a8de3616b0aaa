"""CPU benchmark: the colourisation engine against a plain eager PyTorch forward of the same network.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bench_engine.py            # paper-size network
    PYTHONPATH=src .venv/bin/python bench/bench_engine.py --quick    # smoke run (CI)

Every case runs the *same* generator weights:

* **baseline**: a deep copy of the generator in PyTorch's default (contiguous NCHW) layout,
  ``generator.eval()``, called on a contiguous float32 (N, 1, 224, 224) tensor under
  ``torch.no_grad()`` with its default arguments (class head included), as a user who just calls
  ``ab, probs = generator(x)`` would; nothing else is timed. Run at batch 1 and at the engine's
  batch size.
* **engine**: :class:`napari_chromagan.Colorizer` on the CPU in float32 (channels_last weights,
  ``torch.inference_mode``; bf16, the default on CPUs with native bf16, is timed by
  ``bench_precision.py``); ``predict`` alone, ``colorize`` end to end on a (planes, 224, 224)
  uint8 stack (normalisation, resizing, network, full-resolution Lab -> uint8 RGB), and
  ``colorize`` end to end on one 2048x2048 uint16 image (percentile normalisation, antialiased
  downsizing, network, bilinear chroma upsampling, gamut fitting, uint8 RGB).

The cases are timed round-robin (one sample of each per round) so that load from other
processes falls on all of them alike, and every ratio comes from the same run. Each sample
covers ``--planes`` planes (one plane for the 2048x2048 case); the median sample is reported.

Absolute times hold only for the machine they were measured on; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import napari_chromagan  # noqa: F401
except ImportError:  # run without PYTHONPATH=src from a source checkout
    sys.path.insert(0, str(HERE.parent / "src"))

from _common import (  # noqa: E402
    baseline_checks,
    fill_defaults,
    loadavg,
    machine_info,
    max_ab_diff,
    print_table,
    quiet_samples,
    results_path,
    timeit_interleaved,
    write_json_atomic,
)

from napari_chromagan.engine.colorize import Colorizer  # noqa: E402
from napari_chromagan.model.generator import Generator, ModelConfig  # noqa: E402

ACCEPTANCE_RATIO = 1.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--width", type=float, default=None, help="generator width (default 1.0, the paper's)"
    )
    p.add_argument(
        "--planes", type=int, default=None, help="224x224 planes per sample (default 16)"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed rounds; the median is reported (default 7)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="engine batch size (default: colorize's own)"
    )
    p.add_argument(
        "--big", type=int, default=2048, help="side of the large uint16 image (default 2048)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.1,
        help="a sample counts as quiet when other processes used at most this share of the cores "
        "(default 0.1); medians are over quiet samples when there are any",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default os.cpu_count())"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: width 0.25, 8 planes, 1 warm-up, 2 repeats"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="JSON result path (default bench/results/...)"
    )
    p.add_argument(
        "--min-ratio",
        type=float,
        default=None,
        help=f"exit 1 unless colorize(with_class=False) is at least this many times eager bs1 "
        f"(the acceptance criterion is {ACCEPTANCE_RATIO})",
    )
    args = p.parse_args(argv)
    quick = {"width": 0.25, "planes": 8, "repeats": 2, "warmup": 1}
    full = {"width": 1.0, "planes": 16, "repeats": 7, "warmup": 1}
    fill_defaults(args, quick if args.quick else full)
    if args.batch_size is None:
        args.batch_size = inspect.signature(Colorizer.colorize).parameters["batch_size"].default
    if (
        args.planes < 1
        or args.repeats < 1
        or args.warmup < 0
        or args.batch_size < 1
        or args.big < 1
    ):
        p.error("--planes, --repeats, --batch-size and --big must be >= 1, --warmup >= 0")
    return args


def synthetic_planes(
    rng: np.random.Generator, n: int, size: int, dtype: type, high: int
) -> np.ndarray:
    """Smooth gradients with blobs and noise: image-like, deterministic, using the dtype's range."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        fx, fy = rng.uniform(1, 6, 2)
        base = 0.5 + 0.25 * np.sin(2 * np.pi * fx * xx) * np.cos(2 * np.pi * fy * yy) + 0.2 * xx
        out[i] = base + 0.05 * rng.standard_normal((size, size), dtype=np.float32)
    return (np.clip(out, 0, 1) * high).astype(dtype)


def build_models(args: argparse.Namespace) -> tuple[Any, Colorizer, float]:
    """The eager baseline and the engine on the same seeded weights, and the seconds to build them."""
    t0 = time.perf_counter()
    generator = Generator(ModelConfig(width=args.width)).eval()
    # The baseline gets its own copy in PyTorch's default layout: Colorizer converts the module it
    # is given to channels_last in place.
    baseline = copy.deepcopy(generator).eval()
    # float32, like the baseline: what bf16 adds is bench_precision.py's measurement
    engine = Colorizer(generator, device="cpu", precision="fp32")
    return baseline, engine, time.perf_counter() - t0


def make_cases(
    args: argparse.Namespace, baseline: Any, engine: Colorizer, rng: np.random.Generator
) -> tuple[dict[str, tuple[Any, int, str]], float]:
    """The timed cases, ``name: (fn, planes per sample, description)``, in the table's order,
    and the largest a*b* difference of the engine against the baseline (Lab units)."""
    S = engine.generator.config.image_size
    bs, planes = args.batch_size, args.planes
    x1 = torch.rand(1, 1, S, S)
    xb = torch.rand(bs, 1, S, S)
    stack = synthetic_planes(rng, planes, S, np.uint8, 255)
    big = synthetic_planes(rng, 1, args.big, np.uint16, 65535)[0]
    ab_diff = max_ab_diff(baseline, engine, xb)
    calls_bs1, calls_bs = planes, math.ceil(planes / bs)

    def eager_bs1() -> None:
        with torch.no_grad():
            for _ in range(calls_bs1):
                _ab, _probs = baseline(x1)  # what a user writes: ab, probs = generator(x)

    def eager_bs() -> None:
        with torch.no_grad():
            for _ in range(calls_bs):
                _ab, _probs = baseline(xb)

    def predict(with_class: bool):
        def run() -> None:
            for _ in range(calls_bs):
                engine.predict(xb, with_class=with_class)

        return run

    def colorize_stack(with_class: bool):
        return lambda: engine.colorize(stack, batch_size=bs, with_class=with_class)

    def colorize_big() -> None:
        engine.colorize(big, batch_size=bs, with_class=False)

    stack_case = f"engine.colorize ({planes},{S},{S}) u8"
    cases = {
        "eager fp32 NCHW bs1 (+class head)": (
            eager_bs1,
            calls_bs1,
            "baseline: generator(x), no_grad, batch 1",
        ),
        f"eager fp32 NCHW bs{bs} (+class head)": (
            eager_bs,
            calls_bs * bs,
            f"baseline: generator(x), no_grad, batch {bs}",
        ),
        f"engine.predict bs{bs} with_class=False": (predict(False), calls_bs * bs, "network only"),
        f"engine.predict bs{bs} with_class=True": (predict(True), calls_bs * bs, "network only"),
        f"{stack_case} with_class=False": (colorize_stack(False), planes, "end to end"),
        f"{stack_case} with_class=True": (colorize_stack(True), planes, "end to end"),
        f"engine.colorize {args.big}x{args.big} u16 with_class=False": (
            colorize_big,
            1,
            "end to end, 1 plane",
        ),
    }
    return cases, ab_diff


def summary_rows(
    cases: dict[str, tuple[Any, int, str]],
    samples: dict[str, list[float]],
    foreign: dict[str, list[float | None]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """One row per case: its median over the quiet samples, planes/s, and its ratios against
    the two eager baselines (the first two cases)."""
    rows = []
    for name, (_, n_planes, desc) in cases.items():
        used, quiet = quiet_samples(samples[name], foreign[name], args.max_foreign)
        med = statistics.median(used)
        rows.append(
            {
                "case": name,
                "description": desc,
                "planes_per_sample": n_planes,
                "median_s": med,
                "min_s": min(samples[name]),
                "max_s": max(samples[name]),
                "samples_s": samples[name],
                "foreign_load": foreign[name],
                "quiet": quiet,
                "planes/s": n_planes / med,
                "ms/plane": 1000.0 * med / n_planes,
            }
        )
    eager_bs1, eager_bs = rows[0], rows[1]
    for r in rows:
        r["x vs eager bs1"] = r["planes/s"] / eager_bs1["planes/s"]
        r[f"x vs eager bs{args.batch_size}"] = r["planes/s"] / eager_bs["planes/s"]
    return rows


def settings_record(args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    return {
        "width": args.width,
        "image_size": image_size,
        "planes_per_sample": args.planes,
        "batch_size": args.batch_size,
        "big_side": args.big,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "quick": args.quick,
        "timing": "round-robin over cases, median of repeats (quiet samples when any), "
        "time.perf_counter",
        "max_foreign": args.max_foreign,
    }


def print_report(result: dict[str, Any], out: Path, bs: int) -> None:
    """The warnings, the checks, the acceptance verdict and the table."""
    rows, checks, acceptance = result["rows"], result["checks"], result["acceptance"]
    noisy = [r["case"] for r in rows if r["quiet"].startswith("0/")]
    if noisy:
        print(
            f"warning: other processes loaded the CPU during every sample of {len(noisy)} case(s); "
            "their times (and ratios) are inflated: rerun on an idle machine"
        )
    print(
        f"same weights: {checks['same_weights']}; max |ab engine - ab baseline| = "
        f"{checks['max_abs_ab_diff_engine_vs_baseline_lab']:.2e} (Lab units)"
    )
    print(f"timed in {result['timing_s']:.1f} s; results written to {out}")
    print(
        "acceptance: colorize end to end, with_class=False, vs eager fp32 NCHW bs1: "
        f"{acceptance['ratio']:.2f}x (required >= {ACCEPTANCE_RATIO}x) -> "
        f"{'PASS' if acceptance['passed'] else 'FAIL'}"
    )
    print()
    print_table(
        rows, ["case", "planes/s", "ms/plane", "x vs eager bs1", f"x vs eager bs{bs}", "quiet"]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    info_start = machine_info()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    baseline, engine, build_s = build_models(args)
    same_weights, baseline_contiguous = baseline_checks(baseline, engine)
    cases, ab_diff = make_cases(args, baseline, engine, rng)
    S = engine.generator.config.image_size
    print(
        f"napari-chromagan engine benchmark: width {args.width}, {S}x{S}, {args.planes} "
        f"planes/sample, batch {args.batch_size}, {args.warmup} warm-up + {args.repeats} timed "
        f"rounds, {torch.get_num_threads()} torch threads; model built in {build_s:.1f} s",
        flush=True,
    )
    t0 = time.perf_counter()
    samples, foreign = timeit_interleaved(
        {n: c[0] for n, c in cases.items()}, repeats=args.repeats, warmup=args.warmup
    )
    timing_s = time.perf_counter() - t0
    rows = summary_rows(cases, samples, foreign, args)
    # the acceptance case: the stack colourised end to end without the class head
    key_accept, key_bs1 = rows[4]["case"], rows[0]["case"]
    ratio = rows[4]["x vs eager bs1"]
    result = {
        "benchmark": "engine-cpu",
        "machine": info_start,
        "loadavg_end": loadavg(),
        "settings": settings_record(args, S),
        "checks": {
            "same_weights": same_weights,
            "baseline_contiguous_nchw": baseline_contiguous,
            "engine_channels_last": engine.generator.trunk[0].weight.is_contiguous(
                memory_format=torch.channels_last
            ),
            "max_abs_ab_diff_engine_vs_baseline_lab": ab_diff,
        },
        "build_s": build_s,
        "timing_s": timing_s,
        "rows": rows,
        "acceptance": {
            "what": f"{key_accept} vs {key_bs1}, planes/s ratio",
            "ratio": ratio,
            "required": ACCEPTANCE_RATIO,
            "passed": ratio >= ACCEPTANCE_RATIO,
        },
    }
    out = write_json_atomic(args.out or results_path("engine-cpu", args.quick), result)
    print_report(result, out, args.batch_size)
    if args.min_ratio is not None and ratio < args.min_ratio:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
