"""CPU benchmark: the renderer's two methods, and the live preview's re-render, on one plane.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bench_render.py            # 1024 x 1024, 1 thread
    PYTHONPATH=src .venv/bin/python bench/bench_render.py --quick    # smoke run (CI)

Cases, all on the same plane (the test pattern of ``tests/test_blend.py``'s perf test: L* over
5-95, a*, b* up to +-40, about a third of the pixels out of gamut) and a photograph-like plane
(kodim01 colourised by the packaged weights, few pixels out of gamut):

* **baseline**: ``render_lab(method="exact")``, the engine's rendering (bisection gamut fit, then
  uint8), on (1, 2, H, W) tensors;
* the exact method in two conversions, as it was until 2026-12-03: the fit, then every pixel
  converted again (the same bytes in float64, in float32 to one level on a few values);
* ``render_lab(method="table")`` on the same tensors;
* ``PlaneRenderer.render`` after a slider move (the renderer built once, what the Chroma blend
  preview does per move), with strength 1.5 and hue 10 degrees, and with a 40 % gray blend;
* ``render_srgb``, the whole-array numpy entry (hints re-render strips with it);
* ``fit_chroma_to_gamut`` alone, now and at git commit ``--baseline-ref`` (default
  :data:`BASELINE_REF`, the last commit whose bisection ran the general Lab conversion each step;
  its ``gamut.py`` is loaded from git against today's ``color.lab`` and ``color.fastlab``). Skipped,
  with a note, outside a git checkout.

Timed round-robin (one sample of each per round) so that load from other processes falls on all
alike; the median is reported, with each case's ratio to the baseline of the same plane.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path
from types import ModuleType
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
    host_tag,
    machine_info,
    print_table,
    timeit_interleaved,
    write_json_atomic,
)

from napari_chromagan.color.gamut import fit_chroma_to_gamut  # noqa: E402
from napari_chromagan.color.lab import lab_to_rgb_uint8  # noqa: E402
from napari_chromagan.color.render import (  # noqa: E402
    PlaneRenderer,
    prepare_gamut_table,
    render_lab,
    render_srgb,
)
from napari_chromagan.edit.blend import BlendParams  # noqa: E402

PHOTO = HERE.parent.parent / "shared" / "data" / "dev" / "kodak24" / "kodim01.png"


BASELINE_REF = "8c9397a"


def gamut_at(ref: str) -> ModuleType | None:
    """``napari_chromagan.color.gamut`` as it was at commit ``ref`` (None without git or ``ref``)."""
    proc = subprocess.run(
        ["git", "-C", str(HERE.parent), "show", f"{ref}:src/napari_chromagan/color/gamut.py"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"note: no gamut.py at {ref} ({proc.stderr.strip()}): its cases are skipped")
        return None
    module = ModuleType(f"gamut_at_{ref}")
    exec(
        compile(proc.stdout, f"gamut.py@{ref}", "exec"), module.__dict__
    )  # this repository's own code
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=int, default=1024, help="plane side in pixels (default 1024)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true", help="256 x 256, 2 rounds (a smoke run)")
    p.add_argument("--out", type=Path, default=None, help="JSON result path")
    p.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help=f"git commit whose fit_chroma_to_gamut is timed beside today's (default {BASELINE_REF})",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.side, args.repeats = 256, 2
    return args


def pattern_plane(side: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) * (1024 / side)
    L = (50 + 45 * np.sin(xx / 50) * np.cos(yy / 70)).astype(np.float32)
    ab = np.stack([40 * np.sin(yy / 40), 40 * np.cos(xx / 60)], axis=-1).astype(np.float32)
    return L, ab


def photo_plane(side: int) -> tuple[np.ndarray, np.ndarray] | None:
    """kodim01 cropped/tiled to ``side``, colourised by the packaged weights (None without it)."""
    if not PHOTO.is_file():
        return None
    from PIL import Image

    from napari_chromagan.engine.colorize import Colorizer

    image = np.asarray(Image.open(PHOTO).convert("L"))
    reps = (-(-side // image.shape[0]), -(-side // image.shape[1]))
    gray = np.tile(image, reps)[:side, :side]
    result = Colorizer.from_checkpoint(device="cpu").colorize(gray, with_class=False)
    return result.L, result.ab


def two_conversions(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The exact method's definition, written out: the gamut fit, then the fitted colours
    converted again by the general conversion (``render_lab`` keeps the fit's linear RGB
    instead: the same bytes in float64, one level apart on ~15 in a million values in float32)."""
    fitted = fit_chroma_to_gamut(L, ab, dim=1)
    return lab_to_rgb_uint8(torch.cat([L[:, None], fitted], dim=1), dim=1)


def cases_for(
    name: str, L: np.ndarray, ab: np.ndarray, old: tuple[str, ModuleType] | None
) -> dict[str, Any]:
    Lt = torch.from_numpy(L)[None]
    abt = torch.from_numpy(ab).permute(2, 0, 1)[None].contiguous()
    renderer = PlaneRenderer(L)
    strong, gray = BlendParams(strength=1.5, hue_degrees=10), BlendParams(gray=0.4)
    fits = {f"{name}: fit_chroma_to_gamut": lambda: fit_chroma_to_gamut(Lt, abt, dim=1)}
    if old is not None:
        ref, module = old
        fits[f"{name}: fit_chroma_to_gamut at {ref}"] = lambda: module.fit_chroma_to_gamut(
            Lt, abt, dim=1
        )
    return {
        f"{name}: baseline render_lab exact": lambda: render_lab(Lt, abt),
        f"{name}: exact in two conversions": lambda: two_conversions(Lt, abt),
        f"{name}: render_lab table": lambda: render_lab(Lt, abt, method="table"),
        f"{name}: PlaneRenderer re-render s1.5 h10": lambda: renderer.render(ab, strong),
        f"{name}: PlaneRenderer re-render gray 40%": lambda: renderer.render(ab, gray),
        f"{name}: render_srgb": lambda: render_srgb(L, ab),
        **fits,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    prepare_gamut_table()
    planes = {"pattern": pattern_plane(args.side)}
    photo = photo_plane(args.side)
    if photo is not None:
        planes["kodim01"] = photo
    module = gamut_at(args.baseline_ref)
    old = None if module is None else (args.baseline_ref, module)
    fns: dict[str, Any] = {}
    for name, (L, ab) in planes.items():
        fns.update(cases_for(name, L, ab, old))
    samples, foreign = timeit_interleaved(fns, repeats=args.repeats, warmup=1)
    rows = []
    for label, times in samples.items():
        median = float(np.median(times))
        plane = label.split(":")[0]
        base = float(np.median(samples[f"{plane}: baseline render_lab exact"]))
        shares = [f for f in foreign[label] if f is not None]
        rows.append(
            {
                "case": label,
                "median_ms": 1e3 * median,
                "x_faster": base / median,
                "foreign_share": float(np.median(shares)) if shares else None,
            }
        )
    print(f"{args.side} x {args.side}, {torch.get_num_threads()} thread(s)")
    print_table(rows, ["case", "median_ms", "x_faster", "foreign_share"])
    fit_ratios = {}
    if old is not None:
        for plane in planes:
            then = np.median(samples[f"{plane}: fit_chroma_to_gamut at {args.baseline_ref}"])
            fit_ratios[plane] = float(then / np.median(samples[f"{plane}: fit_chroma_to_gamut"]))
            print(
                f"{plane}: fit_chroma_to_gamut {fit_ratios[plane]:.2f}x as fast as at {args.baseline_ref}"
            )
    out = args.out or HERE / "results" / (
        f"render-cpu-{host_tag()}-{dt.date.today():%Y%m%d}{'-quick' if args.quick else ''}.json"
    )
    write_json_atomic(
        out,
        {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "side": args.side,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "baseline_ref": None if old is None else args.baseline_ref,
            "fit_x_faster_than_baseline_ref": fit_ratios,
            "cases": rows,
            "samples_s": samples,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
