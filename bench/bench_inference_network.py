"""The network as built against the network the engine runs (BatchNorm folded, weights pre-cast).

Times the generator's forward, one plane and a batch of 8, for the packaged default weights at
their own size and the same family at 224 (random weights; the cost does not depend on them),
under bf16 autocast and in float32, as built (``generator``) and as the engine runs it
(:func:`napari_chromagan.model.inference.inference_network`), interleaved round-robin in one run.
Prints images per second, the ratio rewritten / as built, and the largest a*b* difference
between the two (sigmoid output x 255: Lab units), and writes JSON with the date and machine.

    python bench/bench_inference_network.py            # full run, ~1 min on 2 cores
    python bench/bench_inference_network.py --quick --out /tmp/net.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, results_path, timeit_interleaved, write_json_atomic

from napari_chromagan.model.generator import Generator, ModelConfig
from napari_chromagan.model.inference import inference_network
from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import packaged_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=packaged_weights())
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 px, few repeats")
    parser.add_argument(
        "--out", type=Path, default=None, help="the JSON to write (default: in bench/results/)"
    )
    return parser.parse_args(argv)


def networks(weights: Path, quick: bool) -> dict[str, Generator]:
    if quick:
        tiny = ModelConfig(0.125, 64, trunk="efficientnet-lite0")
        return {"lite0 width 0.125 at 64": Generator(tiny).eval()}
    given = load_checkpoint(weights).generator.eval()
    config = given.config
    at_224 = Generator(ModelConfig(config.width, 224, config.num_classes, config.trunk)).eval()
    return {f"default at {config.image_size}": given, "its family at 224": at_224}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    cases: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    for name, generator in networks(args.weights, args.quick).items():
        size = generator.config.image_size
        built = generator.to(memory_format=torch.channels_last)
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", None)):
            rewritten = inference_network(generator, dtype).to(memory_format=torch.channels_last)
            for batch in (1, 8):
                x = torch.rand(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
                key = f"{name} {precision} bs{batch}"

                def run(
                    net: Generator, x: torch.Tensor = x, dtype: torch.dtype | None = dtype
                ) -> Any:
                    with (
                        torch.inference_mode(),
                        torch.autocast(
                            "cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None
                        ),
                    ):
                        return net(x, with_class=True)

                cases[f"{key} as built"] = lambda r=run, n=built: r(n)
                cases[f"{key} rewritten"] = lambda r=run, n=rewritten: r(n)
                diff = (run(built)[0].float() - run(rewritten)[0].float()).abs().max()
                meta[key] = {"batch": batch, "max_ab_diff_lab": float(diff) * 255.0}
    seconds, foreign = timeit_interleaved(cases, repeats=repeats, warmup=1)
    rows, results = [], {}
    for key, info in meta.items():
        built = statistics.median(seconds[f"{key} as built"])
        rewritten = statistics.median(seconds[f"{key} rewritten"])
        results[key] = {
            **info,
            "as_built_images_per_s": info["batch"] / built,
            "rewritten_images_per_s": info["batch"] / rewritten,
            "ratio": built / rewritten,
            "samples_s": {
                "as_built": seconds[f"{key} as built"],
                "rewritten": seconds[f"{key} rewritten"],
            },
            "foreign_cpu_share": {
                "as_built": foreign[f"{key} as built"],
                "rewritten": foreign[f"{key} rewritten"],
            },
        }
        rows.append(
            {
                "case": key,
                "as built img/s": info["batch"] / built,
                "rewritten img/s": info["batch"] / rewritten,
                "rewritten / as built": built / rewritten,
                "max |d ab|": info["max_ab_diff_lab"],
            }
        )
    print_table(
        rows, ["case", "as built img/s", "rewritten img/s", "rewritten / as built", "max |d ab|"]
    )
    payload = {
        "benchmark": "bench_inference_network",
        "machine": machine_info(),
        "weights": str(args.weights),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "results": results,
    }
    out = args.out or results_path("inference-network-cpu", args.quick)
    write_json_atomic(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
