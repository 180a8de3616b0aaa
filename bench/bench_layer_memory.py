"""What a colourised layer's stored result costs, before (float32) and after (packed), in one run.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python bench/bench_layer_memory.py           # 50 x 1024 x 1024
    PYTHONPATH=src .venv/bin/python bench/bench_layer_memory.py --quick   # smoke run

Two parts, written together to ``bench/results/layer-memory-<host>-<date>.json``:

* **memory**: for each layout, in a fresh subprocess, a 50 x 1024 x 1024 engine-shaped result
  (uint8 RGB, float32 L* and a*b*) is made into a napari Image layer the way
  ``layers.add_or_update_layer`` does (metadata from :func:`result_metadata`, or for the old
  layout the version-1 dict of float32 arrays that earlier versions stored), the engine's arrays
  are dropped, and it reports the bytes of the arrays in the layer's metadata, the RSS the
  process holds afterwards, the peak RSS growth while the layer was made (VmHWM), the time to
  store and the time to get one plane back (``get_layer_result``, L* and a*b* of a plane as
  float32). The pixel values come from a photograph (L*) and smooth synthetic chroma: what is
  measured is the storage, which does not depend on them.
* **accuracy**: on photographs of ``../shared/data/dev`` (Kodak and BSDS500 test images,
  colourised for real with the shipped default weights), how far the stored values are from the
  engine's float32 (the largest change of L*, of a* or b*, and their Lab distance), and how far
  Chroma blend renderings and colour hints computed from them are from the same computed from
  float32: the largest difference of an sRGB channel in 0-255 levels, the share of pixels that differ at all,
  and the CIE76 Delta E between the two renderings. A short stack of photographs measures the
  stack smoothing. (At neutral settings no widget renders: the layer shows the engine's RGB.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import napari_chromagan  # noqa: F401
except ImportError:  # run without PYTHONPATH=src from a source checkout
    sys.path.insert(0, str(HERE.parent / "src"))

from _common import (  # noqa: E402
    host_tag,
    machine_info,
    peak_rss_kib,
    peak_rss_reset,
    print_table,
    rss_kib,
    write_json_atomic,
)

DATA = HERE.parent.parent / "shared" / "data" / "dev"
if not DATA.exists():  # a worktree under /work/wt/<name>
    DATA = Path("/work/shared/data/dev")
LAYOUTS = ("float32", "packed")
PARAMS = {
    "strength 150 %": {"strength": 1.5},
    "strength 50 %": {"strength": 0.5},
    "hue +90": {"hue_degrees": 90.0},
    "balance a+10 b-6": {"a_offset": 10.0, "b_offset": -6.0},
    "gray blend 40 %": {"gray": 0.4},
    "strength 0 %": {"strength": 0.0},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--planes", type=int, default=50)
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--photos", type=int, default=12, help="photographs for the accuracy part")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="4 x 256 x 256, 2 photographs")
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=LAYOUTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.planes, args.side, args.photos = 4, 256, 2
    return args


# --------------------------------------------------------------------------- memory (one layout)


def _photos(n: int) -> list[Path]:
    found = sorted((DATA / "kodak24").glob("*.png")) + sorted((DATA / "bsds500-test").glob("*.jpg"))
    picked = found[: (n + 1) // 2] + found[len(found) // 2 :][: n // 2] if len(found) > n else found
    return picked[:n]


def engine_shaped(planes: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB, float32 L* and a*b* of (planes, side, side): what the engine hands over."""
    from PIL import Image

    photos = _photos(1)
    if photos:
        gray = Image.open(photos[0]).convert("L").resize((side, side), Image.BICUBIC)
        base = np.asarray(gray, np.float32) * np.float32(100 / 255)
    else:
        base = np.linspace(0, 100, side * side, dtype=np.float32).reshape(side, side)
    L = np.empty((planes, side, side), np.float32)
    ab = np.empty((planes, side, side, 2), np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for p in range(planes):
        L[p] = np.roll(base, p, axis=1)
        ab[p, ..., 0] = 40 * np.cos(6 * yy + 0.1 * p) - 5
        ab[p, ..., 1] = 50 * np.sin(5 * xx - 0.1 * p) + 10
    rgb = np.zeros((planes, side, side, 3), np.uint8)
    rgb[..., 0] = (L * 2.55).astype(np.uint8)
    return rgb, L, ab


def layer_metadata(engine: Any, layout: str) -> dict[str, Any]:
    """The layer metadata that stores the engine result ``engine`` in ``layout``."""
    from napari_chromagan.napari.layer_result import METADATA_KEY, LayerResult, result_metadata

    if layout == "float32":  # what version 1 stored: its fields, the engine's float32 arrays
        result = LayerResult(
            engine.L, engine.ab, None, True, "gray", engine.normalization.to_dict(), None, "cpu"
        )
        return {METADATA_KEY: {**vars(result), "version": 1}}
    result = LayerResult.from_colorize_result(engine, source="gray", class_head_trained=True)
    return result_metadata(result)


def memory_child(layout: str, planes: int, side: int) -> dict[str, Any]:
    """In this (fresh) process: store one engine-shaped result in a layer, in ``layout``."""
    from _common import timeit
    from napari.layers import Image

    from napari_chromagan.engine.normalize import Normalization
    from napari_chromagan.engine.result import ColorizeResult
    from napari_chromagan.napari.layer_result import METADATA_KEY, get_layer_result

    gc.collect()
    rss_start = rss_kib()
    rgb, L, ab = engine_shaped(planes, side)
    engine = ColorizeResult(rgb, L, ab, None, Normalization("dtype", 0.0, 255.0), None, "cpu")
    del rgb, L, ab
    gc.collect()
    rss_engine = rss_kib()
    reset = peak_rss_reset()
    t0 = time.perf_counter()
    layer = Image(
        engine.rgb, rgb=True, name="gray colorized", metadata=layer_metadata(engine, layout)
    )
    store_s = time.perf_counter() - t0
    del engine
    gc.collect()
    rss_after = rss_kib()
    peak = peak_rss_kib()
    pixels = planes * side * side
    nbytes = _metadata_nbytes(layer.metadata[METADATA_KEY])
    middle = planes // 2

    def read_plane() -> None:
        result = get_layer_result(layer)
        result.L[middle], np.asarray(result.ab[middle], np.float32)

    return {
        "layout": layout,
        "shape": [planes, side, side],
        "metadata_bytes": nbytes,
        "metadata_bytes_per_pixel": nbytes / pixels,
        "metadata_mib": nbytes / 2**20,
        "rgb_mib": layer.data.nbytes / 2**20,
        "rss_held_mib": (rss_after - rss_start) / 1024,
        "peak_growth_while_storing_mib": (peak - rss_engine) / 1024 if reset and peak else None,
        "peak_total_mib": (peak - rss_start) / 1024 if reset and peak else None,
        "engine_result_mib": (rss_engine - rss_start) / 1024,
        "store_s": store_s,
        "read_plane_ms": 1e3 * timeit(read_plane, repeats=5, warmup=1),
    }


def memory_case(layout: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`memory_child` in a fresh interpreter (so peak RSS is this layout's alone)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        layout,
        "--planes",
        str(args.planes),
        "--side",
        str(args.side),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"memory case {layout} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _metadata_nbytes(metadata: dict[str, Any]) -> int:
    return sum(v.nbytes for v in metadata.values() if isinstance(v, np.ndarray))


# --------------------------------------------------------------------------- accuracy


def _difference(stored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far an sRGB rendering from the stored values is from the one from float32."""
    from skimage.color import rgb2lab

    levels = np.abs(stored.astype(np.int16) - reference.astype(np.int16))
    delta_e = np.linalg.norm(rgb2lab(stored) - rgb2lab(reference), axis=-1)
    return {
        "max_level": int(levels.max()),
        "pixels_differing": float((levels.max(axis=-1) > 0).mean()),
        "delta_e_max": float(delta_e.max()),
        "delta_e_p999": float(np.percentile(delta_e, 99.9)),
    }


def _stored(result: Any) -> Any:
    """The engine result as a layer stores it (L* decoded back to float32, a*b* float16)."""
    from dataclasses import replace

    from napari_chromagan.napari.layer_result import PackedLightness, pack_ab

    return replace(result, L=np.asarray(PackedLightness.pack(result.L)), ab=pack_ab(result.ab))


def _hints_for(shape: tuple[int, ...]) -> Any:
    from napari_chromagan.edit.hints import ColorHints

    H, W = shape[-2:]
    coords = [[H / 2, W / 2], [H / 4, W / 4], [3 * H / 4, 2 * W / 3]]
    colours = [[220, 30, 30], [30, 60, 210], [240, 200, 40]]
    return ColorHints.from_points(coords, np.array(colours, np.uint8), radius=max(4.0, W / 60))


def accuracy_photo(colorizer: Any, path: Path) -> dict[str, Any]:
    from PIL import Image

    from napari_chromagan.edit.blend import BlendParams, render_rgb
    from napari_chromagan.edit.hints import apply_color_hints

    gray = np.asarray(Image.open(path).convert("L"))
    result = colorizer.colorize(gray, with_class=False)
    stored = _stored(result)
    dL = stored.L - result.L
    dab = stored.ab.astype(np.float32) - result.ab
    row: dict[str, Any] = {
        "photo": path.name,
        "shape": list(gray.shape),
        "max_abs_dL": float(np.abs(dL).max()),
        "max_abs_dab": float(np.abs(dab).max()),
        "max_lab_distance": float(np.sqrt(dL**2 + (dab**2).sum(axis=-1)).max()),
        "renders": {},
    }
    for name, values in PARAMS.items():
        params = BlendParams(**values)
        row["renders"][name] = _difference(
            render_rgb(stored.L, stored.ab, params), render_rgb(result.L, result.ab, params)
        )
    hints = _hints_for(gray.shape)
    row["renders"]["hints (3 points)"] = _difference(
        apply_color_hints(stored, hints).rgb, apply_color_hints(result, hints).rgb
    )
    return row


def accuracy_stack(colorizer: Any, photos: list[Path], side: int = 320) -> dict[str, Any]:
    """Smoothing across a stack of different photographs (strong flicker), both layouts."""
    from PIL import Image

    from napari_chromagan.edit.blend import BlendParams, apply_to_stack

    planes = [np.asarray(Image.open(p).convert("L"))[:side, :side] for p in photos]
    result = colorizer.colorize(np.stack(planes), with_class=False)
    stored = _stored(result)
    params = BlendParams(strength=1.2, smooth_sigma=1.5)
    return {
        "planes": len(planes),
        "side": side,
        "params": params.to_dict(),
        **_difference(
            apply_to_stack(stored.L, stored.ab, params), apply_to_stack(result.L, result.ab, params)
        ),
    }


def worst(rows: list[dict[str, Any]], stack: dict[str, Any]) -> dict[str, Any]:
    cases = [case for row in rows for case in row["renders"].values()] + [stack]
    return {
        "max_abs_dL": max(row["max_abs_dL"] for row in rows),
        "max_abs_dab": max(row["max_abs_dab"] for row in rows),
        "max_lab_distance": max(row["max_lab_distance"] for row in rows),
        "max_level": max(case["max_level"] for case in cases),
        "pixels_differing": max(case["pixels_differing"] for case in cases),
        "delta_e_max": max(case["delta_e_max"] for case in cases),
        "delta_e_p999": max(case["delta_e_p999"] for case in cases),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(memory_child(args.child, args.planes, args.side)))
        return 0
    import torch

    from napari_chromagan.edit.blend import prepare_gamut_table
    from napari_chromagan.engine.colorize import Colorizer

    torch.set_num_threads(max(1, args.threads))
    memory = [memory_case(layout, args) for layout in LAYOUTS]
    before, after = memory
    ratios = {
        key: after[key] / before[key]
        for key in ("metadata_bytes", "rss_held_mib", "peak_total_mib", "store_s")
        if before.get(key) and after.get(key) is not None
    }

    colorizer = Colorizer.from_checkpoint(None, "cpu")
    prepare_gamut_table()
    photos = _photos(args.photos)
    if not photos:
        raise SystemExit(f"no photographs under {DATA}: the accuracy part needs them")
    rows = [accuracy_photo(colorizer, path) for path in photos]
    stack = accuracy_stack(colorizer, _photos(max(4, min(6, args.photos + 2))))
    report = {
        "benchmark": "layer_memory",
        "machine": machine_info(),
        "config": {
            "planes": args.planes,
            "side": args.side,
            "threads": args.threads,
            "quick": args.quick,
            "weights": str(colorizer.weights),
            "photos": [p.name for p in photos],
        },
        "memory": memory,
        "packed_vs_float32": ratios,
        "accuracy": {"photos": rows, "stack": stack, "worst": worst(rows, stack)},
    }
    out = (
        args.out
        or HERE
        / "results"
        / f"layer-memory-{host_tag()}-{dt.date.today():%Y%m%d}{'-quick' if args.quick else ''}.json"
    )
    write_json_atomic(out, report)

    columns = ["layout", "metadata_bytes_per_pixel", "metadata_mib", "rss_held_mib"]
    columns += ["peak_total_mib", "store_s", "read_plane_ms"]
    print_table(memory, columns)
    print("\npacked / float32: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print("\nworst case over the photographs (stored vs float32):")
    print(json.dumps(report["accuracy"]["worst"], indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
