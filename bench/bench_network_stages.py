"""Where the network's time goes: each stage of the default weights' network beside a baseline.

Times ``Colorizer.predict`` on one plane (the network as the engine runs it: BatchNorm folded,
channels_last, the precision's autocast, the class head included) for the packaged default
weights, at their own network size and at each ``--network-size``, and for the ``--baseline``
weights, round-robin in one run. Forward hooks on the generator's stages time each stage inside
the same calls: the EfficientNet trunk's stem, its seven stages and head convolution (the VGG16
trunk and global trunk whole), the global dense layers, the mid-level branch, the decoder and
the class head; ``other`` is the rest of the call (concatenation, upsampling of the stride-16
features, input scaling, softmax, the finiteness check). Prints, for each network, every stage's
median milliseconds, its share of that network's call and its ratio to the baseline's whole
call, and writes JSON with the date and machine.

It answers one question by measurement: can a lighter decoder or mid-level branch bring the
default weights to the baseline's speed, or is the trunk alone already slower?

    python bench/bench_network_stages.py --baseline demo.pt --network-size 224
    python bench/bench_network_stages.py --quick --out /tmp/stages.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    machine_info,
    print_table,
    quiet_rounds,
    results_path,
    timeit_interleaved,
    write_json_atomic,
)

from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.weights.checkpoint import save_checkpoint
from napari_chromagan.weights.lookup import packaged_weights

MAX_FOREIGN = 0.2  # rounds where other processes used more of the cores are set aside


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the packaged weights")
    parser.add_argument("--baseline", type=Path, default=None, help="the weights to compare with")
    parser.add_argument(
        "--network-size",
        type=int,
        action="append",
        default=[],
        metavar="S",
        help="also time the default weights with the network at S x S (repeatable)",
    )
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: tiny random networks of both families at 64 px, 3 repeats",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the JSON to write (default: in bench/results/)"
    )
    args = parser.parse_args(argv)
    if not args.quick and args.baseline is None:
        parser.error("--baseline is required (the weights to compare with), except with --quick")
    return args


def stage_modules(generator: Generator) -> dict[str, list[nn.Module]]:
    """The generator's stages in the order its forward runs them: name -> the modules that make it."""
    if generator.config.trunk == "vgg16":
        stages: dict[str, list[nn.Module]] = {
            "trunk": [generator.trunk],
            "global trunk": [generator.global_trunk],
        }
    else:
        net = generator.trunk
        stages = {"trunk stem": [net._conv_stem]}
        start = 0
        for i, end in enumerate(net.stage_ends):
            stages[f"trunk stage {i + 1}"] = list(net._blocks[start:end])
            start = end
        stages["trunk head conv"] = [net._conv_head]
    stages["global dense"] = [generator.global_dense]
    stages["mid-level"] = [generator.mid]
    stages["decoder"] = [generator.decoder]
    stages["class head"] = [generator.class_head]
    return stages


class StageTimer:
    """Forward hooks that add up, per call, the wall time spent in each stage's modules, and
    record each stage's output size (h x w of its last module's output)."""

    def __init__(self, stages: dict[str, list[nn.Module]]) -> None:
        self.current: dict[str, float] = dict.fromkeys(stages, 0.0)
        self.calls: list[dict[str, float]] = []
        self.out_size: dict[str, str] = {}
        self._started: dict[int, float] = {}
        self._handles = []
        for name, modules in stages.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._pre))
                self._handles.append(module.register_forward_hook(self._post_for(name)))

    def _pre(self, module: nn.Module, args: Any) -> None:
        self._started[id(module)] = time.perf_counter()

    def _post_for(self, name: str) -> Callable[..., None]:
        def post(module: nn.Module, args: Any, output: Any) -> None:
            self.current[name] += time.perf_counter() - self._started.pop(id(module))
            if isinstance(output, torch.Tensor):
                self.out_size[name] = "x".join(map(str, output.shape[2:])) or str(output.shape[-1])

        return post

    def run(self, fn: Callable[[], Any]) -> float:
        """Run ``fn`` once, keep its stage times as one call, and return its wall time."""
        self.current = dict.fromkeys(self.current, 0.0)
        start = time.perf_counter()
        fn()
        total = time.perf_counter() - start
        self.calls.append({**self.current, "other": total - sum(self.current.values())})
        return total

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def networks(args: argparse.Namespace, scratch: Path) -> dict[str, Colorizer]:
    """name -> the colourizer to time; the baseline last."""
    if args.quick:
        torch.manual_seed(0)
        tiny = {
            "lite": ModelConfig(0.125, 64, trunk="efficientnet-lite0"),
            "vgg": ModelConfig(0.125, 64),
        }
        paths = {
            k: save_checkpoint(scratch / f"{k}.pt", Generator(c).eval()) for k, c in tiny.items()
        }
        weights, baseline, sizes = paths["lite"], paths["vgg"], [96]
    else:
        weights, baseline = args.weights or packaged_weights(), args.baseline
        sizes = args.network_size
    options = {"device": "cpu", "precision": args.precision}
    found = {"default": Colorizer.from_checkpoint(weights, **options)}
    for size in sizes:
        found[f"default@{size}"] = Colorizer.from_checkpoint(weights, network_size=size, **options)
    found["baseline"] = Colorizer.from_checkpoint(baseline, **options)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    out = args.out or results_path("network-stages-cpu", args.quick)
    with tempfile.TemporaryDirectory() as scratch:
        colorizers = networks(args, Path(scratch))
    timers: dict[str, StageTimer] = {}
    cases: dict[str, Callable[[], Any]] = {}
    for name, colorizer in colorizers.items():
        size = colorizer.config.image_size
        x = torch.rand(1, 1, size, size)
        timer = timers[name] = StageTimer(stage_modules(colorizer.generator))
        cases[name] = lambda t=timer, c=colorizer, x=x: t.run(lambda: c.predict(x))
    seconds, foreign = timeit_interleaved(cases, repeats=repeats, warmup=1)
    for timer in timers.values():
        timer.remove()
        del timer.calls[:-repeats]  # the warm-up's calls
    rounds, quiet = quiet_rounds(foreign, MAX_FOREIGN)
    base_total = statistics.median(seconds["baseline"][i] for i in rounds)
    results: dict[str, Any] = {}
    for name, colorizer in colorizers.items():
        timer = timers[name]
        total = statistics.median(seconds[name][i] for i in rounds)
        stages = {}
        rows = []
        for stage in timer.calls[0]:
            ms = 1000 * statistics.median(timer.calls[i][stage] for i in rounds)
            stages[stage] = {
                "out_size": timer.out_size.get(stage),
                "median_ms": ms,
                "share_of_call": ms / (1000 * total),
                "over_baseline_call": ms / (1000 * base_total),
            }
            rows.append(
                {
                    "stage": stage,
                    "out": timer.out_size.get(stage, ""),
                    "ms": ms,
                    "% of call": 100 * ms / (1000 * total),
                    "/ baseline call": ms / (1000 * base_total),
                }
            )
        trunk_ms = sum(
            s["median_ms"]
            for k, s in stages.items()
            if k.startswith("trunk") or k == "global trunk"
        )
        results[name] = {
            "weights": colorizer.weights,
            "config": colorizer.config.to_dict(),
            "precision": "bf16" if colorizer.autocast_dtype is not None else "fp32",
            "call_median_ms": 1000 * total,
            "call_over_baseline_call": total / base_total,
            "trunk_ms": trunk_ms,
            "trunk_over_baseline_call": trunk_ms / (1000 * base_total),
            "stages": stages,
            "call_samples_s": seconds[name],
            "stage_samples_s": timer.calls,
            "foreign_cpu_share": foreign[name],
        }
        rows.append({"stage": "whole call", "ms": 1000 * total, "% of call": 100.0,
                     "/ baseline call": total / base_total})  # fmt: skip
        c = colorizer.config
        print(
            f"\n{name}: {c.trunk} width {c.width} at {c.image_size} px, {results[name]['precision']}"
        )
        print_table(rows, ["stage", "out", "ms", "% of call", "/ baseline call"])
    print(
        "\n"
        + "\n".join(
            f"{n}: whole call {r['call_over_baseline_call']:.2f}x the baseline's, its trunk alone "
            f"{r['trunk_over_baseline_call']:.2f}x"
            for n, r in results.items()
            if n != "baseline"
        )
        + f"\n(quiet rounds: {quiet})"
    )
    payload = {
        "benchmark": "bench_network_stages",
        "machine": machine_info(),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "quiet_rounds": quiet,
        "max_foreign": MAX_FOREIGN,
        "results": results,
    }
    write_json_atomic(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
