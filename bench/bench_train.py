"""Training throughput: images/s of one training step (generator step + critic step) per model size.

Run from the repository root::

    .venv/bin/python bench/bench_train.py            # tiny, demo, paper-size and full models
    .venv/bin/python bench/bench_train.py --quick    # tiny model only (CI smoke run)

Each case times :meth:`training.train.Trainer.train_step` on a synthetic batch already on the
device, so the numbers are the network's, not the loader's. The tiny, demo and paper-size cases
use the ``chromagan-noclass`` preset (MSE + adversarial generator step, then a WGAN-GP critic step
on the same batch with a regenerated fake); the **full** case is the paper's complete objective,
the ``chromagan`` preset, with the class head and a VGG16 teacher (random weights, saved to and
loaded from a temporary .pth as a real one would be: the speed does not depend on the values).

* **baseline**: the same step with contiguous NCHW tensors and float32 throughout;
* **loop default**: what ``python -m training train`` does: channels_last, plus bf16 autocast on CUDA.

Cases are timed round-robin so that load from other processes falls on both alike; the ratio
comes from the same run. The data pipeline (decode + resize of real photographs) is timed
separately when ``../shared/data`` is present.

Then each model's step is run again with a :class:`training.steptimer.StepTimer` attached, which
synchronises the device at every phase boundary and charges the wall time to the phase: generator
forward, teacher, critic on the fake, backward passes, optimizer updates, the critic's step, the
transfer of the losses, plus the Lab conversion of a uint8 batch (done on the device by the loop).

Absolute numbers hold only for the machine named in the JSON; compare ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from _common import machine_info, print_table, timeit_interleaved, write_json_atomic  # noqa: E402

from training import distributed  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.steptimer import StepTimer  # noqa: E402
from training.train import Trainer  # noqa: E402


@dataclass(frozen=True)
class Case:
    width: float
    size: int
    batch: int  # on the CPU
    cuda_batch: int  # on a GPU: large enough to fill it
    preset: str = "chromagan-noclass"


SIZES = {
    "tiny (w0.125, 64 px)": Case(0.125, 64, 8, 256),
    "demo (w0.25, 128 px)": Case(0.25, 128, 16, 256),
    "paper (w1, 224 px)": Case(1.0, 224, 4, 128),
    "full (w1, 224 px, class head + VGG16 teacher)": Case(1.0, 224, 4, 128, preset="chromagan"),
}


def _trainer(case: Case, batch: int, device: str, layout: str, folder: Path) -> Trainer:
    teacher = ""
    if case.preset == "chromagan":
        teacher = str(folder / "vgg16-random.pth")
        if not Path(teacher).is_file():
            from training.teacher import VGG16Classifier

            torch.manual_seed(0)
            torch.save({k: v.half() for k, v in VGG16Classifier().state_dict().items()}, teacher)
    config = TrainConfig(
        data=str(folder),
        out=str(folder / "out"),
        preset=case.preset,
        teacher=teacher,
        width=case.width,
        image_size=case.size,
        batch_size=batch,
        num_workers=0,
        sample_every=0,
        device=device,
        amp="auto" if layout == "default" else "off",
    )
    info = distributed.setup(device)
    trainer = Trainer(config, info)
    if layout == "baseline":
        trainer.memory_format = torch.contiguous_format
        trainer.generator.to(memory_format=torch.contiguous_format)
        trainer.critic.to(memory_format=torch.contiguous_format)
    return trainer


def _breakdown(trainer: Trainer, L: torch.Tensor, ab: torch.Tensor, steps: int) -> dict[str, float]:
    """Seconds per step of each phase of the loop-default step, plus the Lab conversion."""
    from training.data import batch_to_lab

    timer = StepTimer(trainer.device)
    rgb = torch.randint(0, 256, (L.shape[0], 3, L.shape[2], L.shape[3]), dtype=torch.uint8).to(
        trainer.device
    )
    batch_to_lab(rgb)  # warm-up: the steps are already warm from the throughput rounds
    trainer.timer = timer
    try:
        for _ in range(steps):
            with timer.phase("batch to Lab"):
                batch_to_lab(rgb)
            trainer.train_step(L, ab)
    finally:
        trainer.timer = None
    return timer.per_step(steps)


def _write_images(folder: Path) -> None:
    """16 flat PNGs: the training data folder the Trainer's config points at (never loaded)."""
    from PIL import Image

    for i in range(16):
        Image.fromarray(np.full((32, 32, 3), i * 15, np.uint8)).save(folder / f"{i}.png")


def _time_layouts(
    name: str,
    trainers: dict[str, Trainer],
    L: torch.Tensor,
    ab: torch.Tensor,
    batch: int,
    repeats: int,
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """The baseline and the loop-default step round-robin: their two rows and the samples."""

    def step(t: Trainer) -> None:
        t.train_step(
            L.contiguous(memory_format=t.memory_format),
            ab.contiguous(memory_format=t.memory_format),
        )
        if L.device.type == "cuda":
            torch.cuda.synchronize(L.device)

    samples, foreign = timeit_interleaved(
        {k: (lambda t=t: step(t)) for k, t in trainers.items()}, repeats=repeats, warmup=1
    )
    base = statistics.median(samples["baseline"])
    rows = []
    for layout in ("baseline", "default"):
        median = statistics.median(samples[layout])
        shares = [s for s in foreign[layout] if s is not None]
        rows.append(
            {
                "case": f"{name} {'fp32 NCHW baseline' if layout == 'baseline' else 'loop default'}",
                "batch": batch,
                "s/step": median,
                "images/s": batch / median,
                "x vs baseline": base / median,
                "foreign load": max(shares) if shares else None,
            }
        )
    return rows, samples


def bench_steps(
    device: str, sizes: dict[str, Case], repeats: int, breakdown_steps: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    rows = []
    breakdowns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_images(folder)
        for name, case in sizes.items():
            batch = (
                case.cuda_batch if distributed.setup(device).device.type == "cuda" else case.batch
            )
            trainers = {
                layout: _trainer(case, batch, device, layout, folder)
                for layout in ("baseline", "default")
            }
            dev = trainers["default"].device
            g = torch.Generator().manual_seed(0)
            L = torch.rand(batch, 1, case.size, case.size, generator=g).to(dev)
            ab = (torch.rand(batch, 2, case.size, case.size, generator=g) * 60 - 30).to(dev)
            case_rows, samples = _time_layouts(name, trainers, L, ab, batch, repeats)
            rows += case_rows
            default = trainers["default"]
            phases = _breakdown(
                default,
                L.contiguous(memory_format=default.memory_format),
                ab.contiguous(memory_format=default.memory_format),
                breakdown_steps,
            )
            breakdowns[name] = {
                **phases,
                "sum of phases": sum(phases.values()),
                "untimed step": statistics.median(samples["default"]),
            }
            del trainers
    return rows, breakdowns


def breakdown_table(breakdowns: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per phase, one column (ms per step, share of the phases' sum) per model."""
    phases: list[str] = []
    for values in sorted(
        breakdowns.values(), key=len, reverse=True
    ):  # the model with most phases sets the order
        phases += [p for p in values if p not in phases]
    rows = []
    for phase in phases:
        row: dict[str, Any] = {"phase": phase}
        for model, values in breakdowns.items():
            short = model.split(" (")[0]
            ms = values.get(phase)
            row[f"{short} ms"] = None if ms is None else 1e3 * ms
            if phase not in ("sum of phases", "untimed step"):
                row[f"{short} %"] = None if ms is None else 100 * ms / values["sum of phases"]
        rows.append(row)
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
    parser.add_argument(
        "--breakdown-steps", type=int, default=2, help="timed steps per model for the breakdown"
    )
    parser.add_argument(
        "--out", help="JSON file (default: bench/results/train-<device>-<date>.json)"
    )
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in SIZES.items() if k.startswith("tiny")} if args.quick else SIZES
    repeats = 2 if args.quick else args.repeats
    rows, breakdowns = bench_steps(
        args.device, sizes, repeats, 1 if args.quick else args.breakdown_steps
    )
    data = None if args.quick else bench_data(200)
    table = breakdown_table(breakdowns)
    print("\nwhere a loop-default step's time goes (device synchronised at each phase boundary):")
    print_table(table, list(table[0]))
    print()
    print_table(rows, ["case", "batch", "s/step", "images/s", "x vs baseline", "foreign load"])
    if data:
        print(
            f"data pipeline (decode + squash to 224, no workers): {data['images/s']:.0f} images/s"
        )
    info = machine_info()
    device = distributed.setup(args.device).device_info
    result = {
        "benchmark": "train",
        "date": dt.date.today().isoformat(),
        "device": device,
        "machine": info,
        "presets": {name: case.preset for name, case in sizes.items()},
        "rows": rows,
        "breakdown_seconds_per_step": breakdowns,
        "data_pipeline": data,
    }
    kind = "gpu" if "cuda" in device else "cpu"
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / "results" / f"train-{kind}-{dt.date.today():%Y%m%d}.json"
    )
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
