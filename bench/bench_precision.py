"""Should ``precision="auto"`` pick bf16 on this CPU? Colour difference and speed, measured.

For each network (the packaged default weights, and the paper-size width-1 VGG16 generator), every
photograph of the development sets is colourised by the engine in float32 and under bf16
autocast, and the two outputs are compared pixel by pixel in CIEDE2000 (skimage's
``deltaE_ciede2000`` on the sRGB outputs converted to Lab). The speed-up is bf16 / fp32 images
per second at batch 8 on 224x224 planes, timed interleaved in the same run.

The rule (issue 16): bf16 by default where the CPU has native bf16 (AVX512-BF16 or AMX) if the
mean ΔE00 is below 1.0 and its 99th percentile below 3.0 for every network; otherwise fp32.

    python bench/bench_precision.py            # all 224 development photographs
    python bench/bench_precision.py --limit 24 # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, timeit_interleaved, write_result_in

from napari_chromagan import Colorizer
from napari_chromagan.device import cpu_has_native_bf16
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.lookup import packaged_weights

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
MEAN_LIMIT, P99_LIMIT = 1.0, 3.0


def _photos(limit: int | None) -> list[Path]:
    files = sorted(p for p in DEV.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return files[:limit] if limit else files


def _paper_size_generator() -> Generator:
    """The paper's network with seeded random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    generator = Generator(ModelConfig(width=1.0, image_size=224))
    with torch.no_grad():
        for m in generator.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return generator.eval()


def _delta_e(engines: dict[str, Colorizer], files: list[Path]) -> dict[str, float]:
    from PIL import Image
    from skimage.color import deltaE_ciede2000, rgb2lab

    values = []
    for path in files:
        gray = np.asarray(Image.open(path).convert("L"))
        a = engines["fp32"].colorize(gray, with_class=False).rgb
        b = engines["bf16"].colorize(gray, with_class=False).rgb
        values.append(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).ravel().astype(np.float32))
    de = np.concatenate(values)
    return {
        "mean": float(de.mean()),
        "p99": float(np.percentile(de, 99)),
        "max": float(de.max()),
        "images": len(files),
        "pixels": int(de.size),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many photographs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def measure_network(
    make: Callable[[str], Colorizer], files: list[Path], stack: np.ndarray, repeats: int
) -> dict[str, Any]:
    """One network in fp32 and bf16: the colour difference on ``files`` and the speed on ``stack``."""
    engines = {p: make(p) for p in ("fp32", "bf16")}
    colour = _delta_e(engines, files)
    seconds, _ = timeit_interleaved(
        {
            p: (lambda e=e: e.colorize(stack, batch_size=8, with_class=False))
            for p, e in engines.items()
        },
        repeats=repeats,
        warmup=1,
    )
    speed = {p: 8 / statistics.median(t) for p, t in seconds.items()}
    return {
        "delta_e00": colour,
        "images_per_s": speed,
        "speedup": speed["bf16"] / speed["fp32"],
        "passes": colour["mean"] < MEAN_LIMIT and colour["p99"] < P99_LIMIT,
    }


def table_row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    colour, speed = result["delta_e00"], result["images_per_s"]
    return {
        "network": name,
        "dE00 mean": colour["mean"],
        "dE00 p99": colour["p99"],
        "fp32 img/s": speed["fp32"],
        "bf16 img/s": speed["bf16"],
        "bf16 / fp32": speed["bf16"] / speed["fp32"],
        "passes": result["passes"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = _photos(args.limit)
    if not files:
        print(f"no development photographs in {DEV}", file=sys.stderr)
        return 2

    networks = {
        "default weights": lambda p: Colorizer.from_checkpoint(
            packaged_weights(), "cpu", precision=p
        ),
        "paper-size w1 224": lambda p: Colorizer(_paper_size_generator(), "cpu", precision=p),
    }
    stack = (np.random.default_rng(0).random((8, 224, 224)) * 255).astype(np.uint8)
    results = {
        name: measure_network(make, files, stack, args.repeats) for name, make in networks.items()
    }
    print_table(
        [table_row(name, result) for name, result in results.items()],
        ["network", "dE00 mean", "dE00 p99", "fp32 img/s", "bf16 img/s", "bf16 / fp32", "passes"],
    )
    decision = (
        "bf16" if cpu_has_native_bf16() and all(r["passes"] for r in results.values()) else "fp32"
    )
    print(
        f"native bf16 on this CPU: {cpu_has_native_bf16()}; precision='auto' on the CPU should be {decision}"
    )
    payload = {
        "benchmark": "bench_precision",
        "machine": machine_info(),
        "limits": {"mean": MEAN_LIMIT, "p99": P99_LIMIT},
        "native_bf16": cpu_has_native_bf16(),
        "decision": decision,
        "results": results,
    }
    write_result_in(args.out, "precision-cpu", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
