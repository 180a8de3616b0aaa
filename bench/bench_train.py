"""Training throughput: images/s of one training step (generator step + critic step) per model size.

Run from the repository root::

    .venv/bin/python bench/bench_train.py            # tiny, demo and paper-size models
    .venv/bin/python bench/bench_train.py --quick    # tiny model only (CI smoke run)

Each case times :meth:`training.train.Trainer.train_step` (the ``chromagan-noclass`` preset: MSE +
adversarial generator step, then a WGAN-GP critic step on the same batch with a regenerated fake)
on a synthetic batch already on the device, so the numbers are the network's, not the loader's.

* **baseline**: the same step with contiguous NCHW tensors and float32 throughout;
* **loop default**: what ``python -m training train`` does: channels_last, plus bf16 autocast on CUDA.

Cases are timed round-robin so that load from other processes falls on both alike; the ratio
comes from the same run. The data pipeline (decode + resize of real photographs) is timed
separately when ``../shared/data`` is present. Absolute numbers hold only for the machine named
in the JSON; compare ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from _common import machine_info, print_table, timeit_interleaved, write_json_atomic  # noqa: E402

from training import distributed  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.train import Trainer  # noqa: E402

SIZES = {
    "tiny (w0.125, 64 px)": (0.125, 64, 8),
    "demo (w0.25, 128 px)": (0.25, 128, 16),
    "paper (w1, 224 px)": (1.0, 224, 4),
}


def _trainer(width: float, size: int, batch: int, device: str, layout: str, folder: Path) -> Trainer:
    config = TrainConfig(
        data=str(folder), out=str(folder / "out"), preset="chromagan-noclass", width=width, image_size=size,
        batch_size=batch, num_workers=0, sample_every=0, device=device,
        amp="auto" if layout == "default" else "off",
    )
    info = distributed.setup(device)
    trainer = Trainer(config, info)
    if layout == "baseline":
        trainer.memory_format = torch.contiguous_format
        trainer.generator.to(memory_format=torch.contiguous_format)
        trainer.critic.to(memory_format=torch.contiguous_format)
    return trainer


def bench_steps(device: str, sizes: dict[str, tuple[float, int, int]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from PIL import Image

        for i in range(16):
            Image.fromarray(np.full((32, 32, 3), i * 15, np.uint8)).save(folder / f"{i}.png")
        for name, (width, size, batch) in sizes.items():
            trainers = {layout: _trainer(width, size, batch, device, layout, folder) for layout in ("baseline", "default")}
            dev = trainers["default"].device
            g = torch.Generator().manual_seed(0)
            L = torch.rand(batch, 1, size, size, generator=g).to(dev)
            ab = torch.rand(batch, 2, size, size, generator=g).to(dev)

            def step(t: Trainer, L: torch.Tensor = L, ab: torch.Tensor = ab, dev: torch.device = dev) -> None:
                t.train_step(L.contiguous(memory_format=t.memory_format), ab.contiguous(memory_format=t.memory_format))
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)

            samples, foreign = timeit_interleaved({k: (lambda t=t: step(t)) for k, t in trainers.items()},
                                                  repeats=repeats, warmup=1)
            base = statistics.median(samples["baseline"])
            for layout in ("baseline", "default"):
                median = statistics.median(samples[layout])
                shares = [s for s in foreign[layout] if s is not None]
                rows.append({
                    "case": f"{name} {'fp32 NCHW baseline' if layout == 'baseline' else 'loop default'}",
                    "batch": batch,
                    "s/step": median,
                    "images/s": batch / median,
                    "x vs baseline": base / median,
                    "foreign load": max(shares) if shares else None,
                })
            del trainers
    return rows


def bench_data(limit: int) -> dict[str, Any] | None:
    source = ROOT.parent / "shared" / "data" / "train" / "imagenet-sample"
    if not source.is_dir():
        return None
    from training.data import ColorizationDataset, ResumableSampler, find_images, make_loader

    paths = find_images(source)[:limit]
    dataset = ColorizationDataset(paths, 224, resize="squash")
    sampler = ResumableSampler(len(paths), seed=0)
    start = time.perf_counter()
    n = sum(int(b.rgb.shape[0]) for b in make_loader(dataset, sampler, 16, num_workers=0))
    elapsed = time.perf_counter() - start
    return {"images": n, "seconds": elapsed, "images/s": n / elapsed, "workers": 0, "size": 224}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny model only, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="JSON file (default: bench/results/train-<device>-<date>.json)")
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in SIZES.items() if k.startswith("tiny")} if args.quick else SIZES
    repeats = 2 if args.quick else args.repeats
    rows = bench_steps(args.device, sizes, repeats)
    data = None if args.quick else bench_data(200)
    print_table(rows, ["case", "batch", "s/step", "images/s", "x vs baseline", "foreign load"])
    if data:
        print(f"data pipeline (decode + squash to 224, no workers): {data['images/s']:.0f} images/s")
    info = machine_info()
    device = distributed.setup(args.device).device_info
    result = {"benchmark": "train", "date": dt.date.today().isoformat(), "device": device, "machine": info,
              "preset": "chromagan-noclass", "rows": rows, "data_pipeline": data}
    kind = "gpu" if "cuda" in device else "cpu"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"train-{kind}-{dt.date.today():%Y%m%d}.json"
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
