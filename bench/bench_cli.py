"""Command-line benchmark: a folder of small images, the per-file CLI against the pipeline.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bench_cli.py                         # 200 synthetic ~256^2 images
    PYTHONPATH=src .venv/bin/python bench/bench_cli.py --source PHOTOS_DIR     # 200 made from photographs
    PYTHONPATH=src .venv/bin/python bench/bench_cli.py --quick                 # smoke run (~1 min)

What is timed, side by side in one run (round-robin, fresh processes, imports included, as a
user runs it): ``python -m napari_chromagan colorize IN -o OUT -q --weights W`` with

* **baseline**: the CLI of git commit ``--baseline-ref`` (default :data:`BASELINE_REF`, the last
  commit with the per-file CLI: one file per network call, decoding and writing on the main
  thread, full-resolution L* and a*b* always kept), extracted with ``git archive`` into a
  temporary folder and put first on ``PYTHONPATH``; it is not a re-enactment with settings of
  the new code, but the old code itself;
* **pipeline**: this checkout's CLI with its defaults (``--batch-size 8``: small images packed 8 to
  a network call, decoding and writing in worker threads, only RGB kept);
* **pipeline --batch-size 1**: the same without packing.

Besides the wall time, each run's CPU time (user + system, all threads) is recorded: on a
machine whose cores are all busy with other work, overlapping decoding and writing with the
network cannot shorten the wall time, and the CPU time says what each case costs regardless.

Every case gets the same interpreter, weights (the packaged default unless ``--weights``),
input folder and ``OMP_NUM_THREADS`` (``--threads``, default 1: on a shared 2-core machine two
torch threads per process oversubscribe the cores, and a run took 3 min instead of 21 s).
The outputs of the last round are compared pixel by pixel with the baseline's (the files'
bytes differ anyway: their provenance records the date).

Absolute times hold only for the machine they were measured on; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    fill_defaults,
    machine_info,
    print_table,
    quiet_rounds,
    timeit_interleaved,
    write_json_atomic,
)

BASELINE_REF = "9dfd677"  # main before the file pipeline (issue 13)
TARGET_RATIO = 1.5
WEIGHTS = ROOT / "src" / "napari_chromagan" / "_weights" / "chromagan-lite0.pt"
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 12 images of ~64^2, one round")
    p.add_argument("--images", type=int, default=None, help="images in the folder (default 200)")
    p.add_argument(
        "--side", type=int, default=None, help="their nominal side in pixels (default 256)"
    )
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="make the images from the photographs in this folder (gray, resized); default synthetic",
    )
    p.add_argument(
        "--weights", type=Path, default=WEIGHTS, help="checkpoint (default: the packaged weights)"
    )
    p.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help=f"git commit of the baseline CLI (default {BASELINE_REF})",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS of every run (default 1)"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1)")
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.1,
        help="medians use rounds in which other processes used at most this share of the cores, "
        "when there are any (default 0.1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default bench/results/cli-cpu-<YYYYMMDD>.json)",
    )
    args = p.parse_args(argv)
    defaults = (
        {"images": 12, "side": 64, "repeats": 1, "warmup": 0}
        if args.quick
        else {"images": 200, "side": 256, "repeats": 3, "warmup": 1}
    )
    fill_defaults(args, defaults)
    if min(args.images, args.side, args.repeats, args.threads) < 1 or args.warmup < 0:
        p.error("--images, --side, --repeats and --threads must be >= 1, --warmup >= 0")
    return args


def make_images(folder: Path, n: int, side: int, source: Path | None) -> list[tuple[int, int]]:
    """``n`` gray PNGs of about ``side`` pixels (sizes vary by a few pixels, as real folders do).

    Within 6 % of square, so that the EfficientNet family's network sees each at S x S, as the
    baseline CLI did (it squashed every plane; the engine now keeps the aspect ratio of planes
    further from square), and the pixels stay comparable.
    """
    from PIL import Image

    folder.mkdir(parents=True)
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES) if source else []
    if source is not None and not photos:
        raise SystemExit(f"no images found in {source}")
    rng = np.random.default_rng(0)
    sizes = []
    for i in range(n):
        w, h = side + (i % 5) * side // 64 - side // 32, side - (i % 3) * side // 64
        if photos:
            image = Image.open(photos[i % len(photos)]).convert("L").resize((w, h), Image.BILINEAR)
        else:
            y, x = np.mgrid[0:h, 0:w] / side
            fx, fy = rng.uniform(1, 6, 2)
            v = (
                0.5
                + 0.3 * np.sin(2 * np.pi * fx * x) * np.cos(2 * np.pi * fy * y)
                + 0.05 * rng.standard_normal((h, w))
            )
            image = Image.fromarray((np.clip(v, 0, 1) * 255).astype(np.uint8))
        image.save(folder / f"img{i:04d}.png")
        sizes.append((h, w))
    return sizes


def extract_baseline(ref: str, into: Path) -> Path:
    """The ``src`` folder of commit ``ref`` of this repository, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src/napari_chromagan"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def cli_run(
    src: Path, images: Path, out: Path, weights: Path, threads: int, extra: tuple[str, ...]
) -> float:
    """One ``napari-chromagan colorize`` of the folder in a fresh interpreter, into an empty ``out``.

    Returns the CPU seconds (user + system) the run used, all its threads together.
    """
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    cmd = [
        sys.executable,
        "-m",
        "napari_chromagan",
        "colorize",
        str(images),
        "-o",
        str(out),
        "-q",
        "--weights",
        str(weights),
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def compare(reference: Path, other: Path) -> dict[str, Any]:
    """How the RGB pixels of ``other``'s files differ from ``reference``'s (same names)."""
    from PIL import Image

    names = sorted(p.name for p in reference.iterdir())
    if names != sorted(p.name for p in other.iterdir()):
        raise RuntimeError(f"{other} and {reference} hold different files")
    files = values = total = worst = 0
    for name in names:
        a = np.asarray(Image.open(reference / name)).astype(np.int16)
        b = np.asarray(Image.open(other / name)).astype(np.int16)
        if a.shape != b.shape:
            raise RuntimeError(f"{name}: shape {b.shape} instead of {a.shape}")
        d = np.abs(a - b)
        files += bool(d.any())
        values += int((d > 0).sum())
        total += d.size
        worst = max(worst, int(d.max()))
    return {
        "files": len(names),
        "files_differing": files,
        "values_differing": values,
        "values": total,
        "max_abs_diff": worst,
        "identical": values == 0,
    }


def cli_cases(args: argparse.Namespace, tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """The compared CLIs, ``name: (src folder to run, extra options)``, the baseline first."""
    (tmp_path / "baseline").mkdir()
    return {
        f"baseline CLI ({args.baseline_ref})": (
            extract_baseline(args.baseline_ref, tmp_path / "baseline"),
            (),
        ),
        # what a user gets: precision "auto" is bf16 on CPUs with native bf16 (issue 16)
        "pipeline (defaults)": (ROOT / "src", ()),
        # like for like with the baseline, whose "auto" was float32 on every CPU
        "pipeline --precision fp32": (ROOT / "src", ("--precision", "fp32")),
        "pipeline --batch-size 1 --precision fp32": (
            ROOT / "src",
            ("--batch-size", "1", "--precision", "fp32"),
        ),
    }


def time_cases(
    args: argparse.Namespace, cases: dict[str, tuple[Path, tuple[str, ...]]], tmp_path: Path
) -> tuple[
    dict[str, list[float]], dict[str, list[float | None]], dict[str, list[float]], dict[str, Any]
]:
    """Every case round-robin on ``tmp_path / "in"``: wall seconds, foreign load and CPU seconds
    per sample, and the last round's pixels of each case against the baseline's."""
    outs = {name: tmp_path / f"out{i}" for i, name in enumerate(cases)}
    cpu: dict[str, list[float]] = {name: [] for name in cases}

    def runner(name: str) -> Any:
        src, extra = cases[name]
        return lambda: cpu[name].append(
            cli_run(src, tmp_path / "in", outs[name], args.weights, args.threads, extra)
        )

    print(
        f"napari-chromagan CLI benchmark: {args.images} images of ~{args.side}^2 "
        f"({'from ' + str(args.source) if args.source else 'synthetic'}), OMP_NUM_THREADS={args.threads}, "
        f"{args.warmup} warm-up + {args.repeats} timed rounds",
        flush=True,
    )
    samples, foreign = timeit_interleaved(
        {name: runner(name) for name in cases}, repeats=args.repeats, warmup=args.warmup
    )
    baseline = next(iter(cases))
    pixels = {name: compare(outs[baseline], outs[name]) for name in cases if name != baseline}
    return samples, foreign, cpu, pixels


def summary_rows(
    args: argparse.Namespace,
    samples: dict[str, list[float]],
    foreign: dict[str, list[float | None]],
    cpu: dict[str, list[float]],
) -> tuple[list[dict[str, Any]], str]:
    """One row per case, medians over the quiet rounds (wall and CPU time, against the baseline,
    the first case), and "quiet/total" rounds."""
    rounds, quiet = quiet_rounds(foreign, args.max_foreign)
    median = {name: statistics.median(samples[name][i] for i in rounds) for name in samples}
    cpu_s = {name: statistics.median(cpu[name][args.warmup + i] for i in rounds) for name in cpu}
    baseline = next(iter(samples))
    rows = [
        {
            "case": name,
            "median s": median[name],
            "images/s": args.images / median[name],
            "x vs baseline": median[baseline] / median[name],
            "cpu s": cpu_s[name],
            "cpu x vs baseline": cpu_s[baseline] / cpu_s[name],
        }
        for name in samples
    ]
    return rows, quiet


def settings_record(args: argparse.Namespace, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "images": args.images,
        "side": args.side,
        "sizes": sorted({f"{h}x{w}" for h, w in sizes}),
        "source": str(args.source) if args.source else "synthetic",
        "weights": str(args.weights),
        "baseline_ref": args.baseline_ref,
        "omp_num_threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_foreign": args.max_foreign,
        "quick": args.quick,
        "timing": "fresh `python -m napari_chromagan colorize` per sample (imports included), round-robin "
        "over the cases, median over the rounds in which every case was quiet (all rounds when none was)",
    }


def print_report(result: dict[str, Any], out: Path) -> None:
    """The table, how the pixels differ from the baseline's, and the target's verdict."""
    print_table(
        result["rows"],
        ["case", "median s", "images/s", "x vs baseline", "cpu s", "cpu x vs baseline"],
    )
    for name, check in result["pixels_vs_baseline"].items():
        print(
            f"{name} vs baseline: {check['files_differing']} of {check['files']} files differ, "
            f"{check['values_differing']} of {check['values']} values, max |diff| {check['max_abs_diff']}"
        )
    if result["quiet_rounds"].startswith("0/"):
        print("warning: other processes loaded the CPU in every round; the times are inflated")
    ratio = result["target"]["ratio"]
    print(
        f"target: {ratio:.2f}x (>= {TARGET_RATIO}) -> {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}; "
        f"results written to {out}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        tmp_path = Path(tmp)
        sizes = make_images(tmp_path / "in", args.images, args.side, args.source)
        cases = cli_cases(args, tmp_path)
        samples, foreign, cpu, pixels = time_cases(args, cases, tmp_path)
    rows, quiet = summary_rows(args, samples, foreign, cpu)
    ratio = rows[1]["x vs baseline"]
    result = {
        "benchmark": "cli-cpu",
        "machine": machine_info(),
        "settings": settings_record(args, sizes),
        "rows": rows,
        "quiet_rounds": quiet,
        "pixels_vs_baseline": pixels,
        "target": {
            "what": "t(baseline CLI) / t(pipeline CLI, defaults)",
            "ratio": ratio,
            "required_at_least": TARGET_RATIO,
            "passed": ratio >= TARGET_RATIO,
        },
        "samples_s": samples,
        "cpu_samples_s": cpu,
        "foreign_load": foreign,
        "elapsed_s": time.perf_counter() - started,
    }
    out = write_json_atomic(
        args.out or HERE / "results" / f"cli-cpu-{dt.date.today():%Y%m%d}.json", result
    )
    print_report(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
