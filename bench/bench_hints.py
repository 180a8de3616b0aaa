"""CPU benchmark of colour hints: the preview after adding a hint, and a large image, against the
network's own colourisation of the same plane.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bench_hints.py             # 1024^2 and 4096^2
    PYTHONPATH=src .venv/bin/python bench/bench_hints.py --quick     # smoke run (the test suite)

The targets (issue 14): the preview of a 1024 x 1024 plane after adding a hint in at most 1 s,
a 4096 x 4096 image in at most 10 s, and under 2 GB of memory for 4096^2 beyond the image.

What is timed, all in one run and round-robin (each round takes one sample of every case):

* **baseline**: ``Colorizer.colorize`` of the same plane (gray uint8, class head skipped), with
  the weights the plugin uses by default (the shipped demo model; ``--weights`` for others):
  what the user waited for to get the colourised layer in the first place.
* **preview**: what the widget does when a hint is added: ``hint_plane`` (the working-resolution
  solve with every hint so far, then the full-resolution change) and the rendering of the pixels
  that changed (``PlaneRenderer``), with 1 and with 5 points.
* **solve** alone (``hint_solver.plane_change``): how the preview splits.
* for 4096^2: ``apply_color_hints`` end to end (new a*b* and RGB arrays), and in a fresh
  subprocess its peak RSS growth (VmHWM against the RSS once the image and its result exist).

The photograph is Kodak's kodim01 (500 x 500 in ../shared/data/dev), upscaled bicubically to
the plane size (no photograph that large is at hand); the hints are red and blue points on its
door, shutters and wall. Absolute times hold only for the machine they were measured on; the
ratios against the baseline are what to compare, and ``quiet`` says how many samples were taken
while other processes used at most ``--max-foreign`` of the cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
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
    machine_info,
    peak_rss_kib,
    peak_rss_reset,
    print_table,
    quiet_samples,
    results_path,
    rss_kib,
    timeit_interleaved,
    write_json_atomic,
)

from napari_chromagan.color.render import PlaneRenderer, prepare_gamut_table  # noqa: E402
from napari_chromagan.edit.hint_solver import plane_change, working_shape  # noqa: E402
from napari_chromagan.edit.hints import ColorHints, HintParams, apply_color_hints, hint_plane  # noqa: E402
from napari_chromagan.engine.colorize import Colorizer  # noqa: E402

PHOTO = HERE.parent.parent / "shared" / "data" / "dev" / "kodak24" / "kodim01.png"
# (row, col) in a 500 x 500 kodim01 and an sRGB colour: the door, two shutters, the wall
POINTS = [
    ((402, 145), (200, 30, 30)),
    ((160, 200), (40, 70, 170)),
    ((420, 330), (180, 40, 40)),
    ((300, 120), (200, 190, 160)),
    ((60, 420), (50, 80, 160)),
]
TARGETS = {"preview_1024_s": 1.0, "image_4096_s": 10.0, "memory_4096_gib": 2.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="256^2 and 512^2, one round (smoke run)")
    p.add_argument("--sizes", default=None, help="preview plane sides (default 1024)")
    p.add_argument("--big", type=int, default=None, help="side of the large image (default 4096)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)"
    )
    p.add_argument(
        "--weights", default=None, help="weights for the baseline (default: the shipped demo model)"
    )
    p.add_argument(
        "--working",
        default="65536,262144",
        help="working pixels to time the 1024^2 preview at (default 65536,262144; the first is the default)",
    )
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.1,
        help="a sample is quiet below this share of foreign CPU",
    )
    p.add_argument(
        "--out", default=None, help="JSON path (default bench/results/hints-cpu-<host>-<date>.json)"
    )
    p.add_argument(
        "--memory-case", type=int, default=None, help=argparse.SUPPRESS
    )  # the subprocess
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or "256"
        args.big = args.big or 512
        args.repeats = args.repeats or 1
        args.warmup = 0
        args.working = "65536"
    args.sizes = [int(s) for s in (args.sizes or "1024").split(",")]
    args.big = args.big or 4096
    args.repeats = args.repeats or 5
    args.working = [int(s) for s in args.working.split(",")]
    return args


def gray_plane(side: int) -> np.ndarray:
    """kodim01's luminance upscaled to side x side (uint8); a synthetic scene without it."""
    if PHOTO.exists():
        from PIL import Image

        rgb = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        return np.asarray(rgb.convert("L"))
    yy, xx = np.mgrid[0:side, 0:side] / side
    return (80 + 100 * ((xx - 0.3) ** 2 + (yy - 0.6) ** 2 < 0.05) + 40 * np.sin(9 * xx)).astype(
        np.uint8
    )


def hints_for(side: int, n: int) -> ColorHints:
    scale = side / 500.0
    coords = [(r * scale, c * scale) for (r, c), _ in POINTS[:n]]
    colours = [colour for _, colour in POINTS[:n]]
    return ColorHints.from_points(coords, colours, radius=max(5.0, 0.01 * side))


def preview(result: Any, hints: ColorHints, params: HintParams) -> np.ndarray:
    """What the widget's preview worker does for one plane."""
    new = hint_plane(result.L, result.ab, hints, params)
    rgb = result.rgb.copy()
    moved = (new != result.ab).any(axis=-1)
    if moved.any():
        rgb[moved] = PlaneRenderer(result.L).render(new)[moved]
    return rgb


def summarise(samples: list[float], foreign: list[float | None], limit: float) -> dict[str, Any]:
    use, quiet = quiet_samples(samples, foreign, limit)
    return {
        "median_s": statistics.median(use),
        "quiet": quiet,
        "samples_s": samples,
        "foreign_share": foreign,
    }


def memory_case(args: argparse.Namespace) -> dict[str, Any]:
    """In this (fresh) process: the peak RSS growth of apply_color_hints on a big image."""
    colorizer = Colorizer.from_checkpoint(args.weights, "cpu")
    result = colorizer.colorize(gray_plane(args.memory_case), with_class=False)
    prepare_gamut_table()
    hints = hints_for(args.memory_case, 5)
    before = rss_kib()
    reset = peak_rss_reset()
    start_peak = peak_rss_kib() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = apply_color_hints(result, hints)
    peak = peak_rss_kib() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image = result.L.nbytes + result.ab.nbytes + result.rgb.nbytes
    outputs = out.ab.nbytes + out.rgb.nbytes
    return {
        "side": args.memory_case,
        "rss_before_mib": before / 1024,
        "peak_growth_mib": (peak - before) / 1024,
        "peak_growth_gib": (peak - before) / 1024**2,
        "peak_reset": reset,
        "start_peak_mib": None if start_peak is None else start_peak / 1024,
        "image_result_mib": image / 2**20,
        "outputs_mib": outputs / 2**20,
    }


def preview_cases(
    result: Any, side: int, working_pixels: list[int], default: HintParams
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The preview with 1 and 5 points, and the solve alone, at each working resolution."""
    cases: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    for working in working_pixels:
        params = HintParams(working_pixels=working)
        label = "" if working == default.working_pixels else f", {working} working px"
        for n in (1, 5):
            hints = hints_for(side, n)
            name = f"preview {side}^2, {n} point{'s' if n > 1 else ''}{label}"
            cases[name] = lambda r=result, h=hints, p=params: preview(r, h, p)
            meta[name] = {"side": side, "kind": "preview", "points": n, "working_pixels": working}
        solve = f"  of which solve {side}^2, 5 points{label}"
        five = hints_for(side, 5)
        cases[solve] = lambda r=result, h=five, p=params: plane_change(r.L, r.ab, h, (), p)
        meta[solve] = {"side": side, "kind": "solve", "points": 5, "working_pixels": working}
    return cases, meta


def build_cases(
    colorizer: Colorizer, args: argparse.Namespace, default: HintParams
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every timed case (name: fn) in the table's order, and what each one is (name: record)."""
    cases: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    for side in [*args.sizes, args.big]:
        gray = gray_plane(side)
        result = colorizer.colorize(gray, with_class=False)
        cases[f"baseline: colorize {side}^2"] = lambda g=gray: colorizer.colorize(
            g, with_class=False
        )
        meta[f"baseline: colorize {side}^2"] = {"side": side, "kind": "baseline"}
        if side == args.big:
            hints = hints_for(side, 5)
            name = f"apply_color_hints {side}^2, 5 points"
            cases[name] = lambda r=result, h=hints: apply_color_hints(r, h)
            meta[name] = {"side": side, "kind": "image", "points": 5}
            continue
        more_cases, more_meta = preview_cases(result, side, args.working, default)
        cases.update(more_cases)
        meta.update(more_meta)
    return cases, meta


def spawn_memory_case(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`memory_case` in a fresh interpreter, so that its peak RSS is its own."""
    return json.loads(
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-case",
                str(args.big),
                "--threads",
                str(args.threads),
            ]
            + (["--weights", args.weights] if args.weights else []),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def target_values(
    rows: list[dict[str, Any]], memory: dict[str, Any], big: int
) -> dict[str, float | None]:
    """The figures the targets are about; None for those this run's sizes do not measure."""
    by_name = {row["case"]: row for row in rows}
    preview_1024 = by_name.get("preview 1024^2, 5 points")
    image_big = by_name[f"apply_color_hints {big}^2, 5 points"]
    return {
        "preview_1024_s": None if preview_1024 is None else preview_1024["median_s"],
        "image_4096_s": image_big["median_s"] if big == 4096 else None,
        "memory_4096_gib": memory["peak_growth_gib"] if big == 4096 else None,
    }


def settings_record(
    args: argparse.Namespace, colorizer: Colorizer, default: HintParams
) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "sizes": args.sizes,
        "big": args.big,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
        "weights": str(colorizer.weights),
        "working_pixels": args.working,
        "default_params": default.to_dict(),
        "photo": str(PHOTO) if PHOTO.exists() else "synthetic",
        "max_foreign": args.max_foreign,
    }


def print_report(report: dict[str, Any], out: Path) -> None:
    """The table against the baselines, the memory, and the targets' verdicts."""
    rows, memory, big = report["rows"], report["memory"], report["settings"]["big"]
    targets, passed = report["targets"]["values"], report["targets"]["passed"]
    print_table(
        [{k: row[k] for k in ("case", "median_s", "x baseline", "quiet")} for row in rows],
        ["case", "median_s", "x baseline", "quiet"],
    )
    print(
        f"\nmemory, apply_color_hints {big}^2: peak RSS +{memory['peak_growth_mib']:.0f} MiB "
        f"(outputs {memory['outputs_mib']:.0f} MiB; the image's result {memory['image_result_mib']:.0f} MiB before)"
    )
    for key, value in targets.items():
        if value is not None:
            verdict = "PASS" if passed[key] else "FAIL"
            print(f"target {key}: {value:.3g} <= {TARGETS[key]}: {verdict}")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.memory_case:
        print(json.dumps(memory_case(args)))
        return 0

    colorizer = Colorizer.from_checkpoint(args.weights, "cpu")
    prepare_gamut_table()
    default = HintParams()
    cases, meta = build_cases(colorizer, args, default)
    samples, foreign = timeit_interleaved(cases, repeats=args.repeats, warmup=args.warmup)
    rows = [
        {"case": name, **meta[name], **summarise(samples[name], foreign[name], args.max_foreign)}
        for name in cases
    ]
    medians = {row["case"]: row["median_s"] for row in rows}
    for row in rows:
        row["x baseline"] = row["median_s"] / medians[f"baseline: colorize {row['side']}^2"]
    memory = spawn_memory_case(args)

    targets = target_values(rows, memory, args.big)
    passed = {k: (None if v is None else v <= TARGETS[k]) for k, v in targets.items()}
    h, w = working_shape(args.big, args.big, default.working_pixels)
    report = {
        "benchmark": "hints",
        "date": dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings_record(args, colorizer, default),
        "rows": rows,
        "memory": memory,
        "working_shape_big": [h, w],
        "targets": {"values": targets, "required_at_most": TARGETS, "passed": passed},
    }
    out = args.out or results_path("hints-cpu", args.quick)
    write_json_atomic(out, report)
    print_report(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
