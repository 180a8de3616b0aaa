"""Speed of the default weights against a baseline weights file, end to end through the engine.

Times :meth:`napari_chromagan.Colorizer.colorize` on a 224x224 uint8 plane (one plane per call,
what the plugin does for a 2D image) and on a stack of 16 such planes, for both weights,
interleaved round-robin in one run so that load on the machine hits both alike. Prints the
images per second and the ratio default / baseline, and writes JSON with the date and machine.

    python bench/bench_default_weights.py --baseline /tmp/chromagan-demo-small.pt

The issue's target: the default weights colourise a 224 plane at least as fast as the demo
model did (ratio >= 1).

``--compile`` adds a third engine, the default weights through ``Colorizer(compile=True)``
(``torch.compile``; on the CPU with inductor's freezing), timed in the same rounds; the time of
its first calls (the compilations, one per batch shape) is recorded separately. Each
``--network-size S`` adds one more, "default@S": the default weights with their network run at
S x S (``Colorizer(network_size=S)``), on the same 224 planes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, timeit_interleaved, write_result_in

from napari_chromagan import Colorizer
from napari_chromagan.weights.lookup import packaged_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", type=Path, default=packaged_weights(), help="default: the packaged weights"
    )
    parser.add_argument("--baseline", type=Path, required=True, help="the weights to compare with")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the default weights' precision (default: auto, as users get)",
    )
    parser.add_argument(
        "--baseline-precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the baseline's precision ('fp32': what 'auto' was on every CPU before "
        "bf16 became the default on CPUs with native bf16)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the default weights compiled (Colorizer(compile=True))",
    )
    parser.add_argument(
        "--network-size",
        type=int,
        action="append",
        default=[],
        metavar="S",
        help="also time the default weights with the network at S x S (repeatable)",
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def sample_images() -> tuple[np.ndarray, np.ndarray]:
    """A 224x224 uint8 plane and a stack of 16 shifted copies of it."""
    rng = np.random.default_rng(0)
    # a smooth random photograph-like plane, not noise: the engine's cost does not depend on it,
    # but an all-noise input would be an odd thing to time
    small = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    plane = np.kron(small, np.ones((8, 8), np.uint8))
    stack = np.stack([np.roll(plane, i, axis=1) for i in range(16)])
    return plane, stack


def time_engines(
    engines: dict[str, Colorizer], repeats: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both engines on the plane and on the stack, round-robin: the table's rows (default /
    baseline per shape) and the per-case results with the ratios."""
    plane, stack = sample_images()
    cases = {}
    for name, engine in engines.items():
        cases[f"{name} 224 plane"] = lambda e=engine: e.colorize(plane)
        cases[f"{name} 16x224 stack"] = lambda e=engine: e.colorize(stack, batch_size=16)
    first_calls = {}
    for case, fn in cases.items():  # outside the timing: a compiled engine compiles here
        start = time.perf_counter()
        fn()
        first_calls[case] = time.perf_counter() - start
    seconds, foreign = timeit_interleaved(cases, repeats=repeats, warmup=1)

    rows, results = [], {}
    for case, times in seconds.items():
        n = 16 if "stack" in case else 1
        median = statistics.median(times)
        results[case] = {
            "median_s": median,
            "images_per_s": n / median,
            "samples_s": times,
            "foreign_cpu_share": foreign[case],
            "first_call_s": first_calls[case],
        }
    for shape in ("224 plane", "16x224 stack"):
        b = results[f"baseline {shape}"]
        for name in engines:
            if name == "baseline":
                continue
            d = results[f"{name} {shape}"]
            ratio = d["images_per_s"] / b["images_per_s"]
            results[f"ratio {shape}" if name == "default" else f"ratio {name} {shape}"] = ratio
            rows.append(
                {
                    "case": f"{name} {shape}",
                    "img/s": d["images_per_s"],
                    "baseline img/s": b["images_per_s"],
                    "/ baseline": ratio,
                    "first call s": first_calls[f"{name} {shape}"],
                }
            )
    return rows, results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [
        ("default", args.weights, args.precision, False, None),
        ("baseline", args.baseline, args.baseline_precision, False, None),
    ]
    if args.compile:
        runs.append(("compiled", args.weights, args.precision, True, None))
    runs += [(f"default@{s}", args.weights, args.precision, False, s) for s in args.network_size]
    engines = {
        name: Colorizer.from_checkpoint(
            path, device="cpu", precision=precision, compile=compile_, network_size=size
        )
        for name, path, precision, compile_, size in runs
    }
    rows, results = time_engines(engines, args.repeats)
    print_table(rows, ["case", "img/s", "baseline img/s", "/ baseline", "first call s"])
    if args.compile and not engines["compiled"].compiled:
        print("torch.compile failed: the 'compiled' engine fell back to eager (see the log)")
    payload = {
        "benchmark": "bench_default_weights",
        "machine": machine_info(),
        "weights": {
            name: {"path": str(path), "config": engines[name].generator.config.to_dict()}
            for name, path, *_ in runs
        },
        "compiled": {
            "requested": args.compile,
            "ran": bool(engines.get("compiled") and engines["compiled"].compiled),
        },
        "precision": {
            "default": args.precision,
            "baseline": args.baseline_precision,
            "autocast": {n: str(e.autocast_dtype) for n, e in engines.items()},
        },
        "repeats": args.repeats,
        "results": results,
    }
    write_result_in(args.out, "default-weights-cpu", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
