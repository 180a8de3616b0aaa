"""What the network size does to the colour: the same weights scored at several network sizes.

For each development set and each ``--network-size``, ``training.evaluate`` in one protocol
(``--size``, 224 by default, so that every size is scored on the same images and truth): PSNR
over the no-colour floor, colourfulness as a share of the truth's, the mean a*, b* against the
truth's and, with ``--teacher``, the class head's agreement. Prints each size beside the
weights' own (the baseline, measured in the same run) and writes JSON with the date and machine.
The speed of each size is ``bench_default_weights.py --network-size``.

    python bench/bench_network_size.py --data ../shared/data/dev/kodak24 \\
        --data ../shared/data/dev/bsds500-test --network-size 160 --network-size 192 \\
        --network-size 256 --teacher efficientnet-lite0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/, from a source checkout
from _common import machine_info, print_table, write_result_in

from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import packaged_weights
from training.evaluate import evaluate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", type=Path, default=packaged_weights(), help="default: the packaged weights"
    )
    parser.add_argument("--data", type=Path, action="append", required=True, metavar="DIR")
    parser.add_argument("--network-size", type=int, action="append", default=[], metavar="S")
    parser.add_argument("--size", type=int, default=224, help="the protocol's size (default 224)")
    parser.add_argument("--teacher", default=None, help="e.g. efficientnet-lite0")
    parser.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def figures(summary: dict[str, Any], size: int) -> dict[str, float]:
    """The issue's figures from one evaluation summary."""
    m = summary["metrics"]
    row = {
        "psnr_over_floor_db": m[f"psnr_{size}"]["model"] - m[f"psnr_{size}"]["floor"],
        "colourfulness_share": m["colourfulness"]["model"] / m["colourfulness"]["truth"],
        "a_mean_minus_truth": m["a_mean"]["model"] - m["a_mean"]["truth"],
        "b_mean_minus_truth": m["b_mean"]["model"] - m["b_mean"]["truth"],
    }
    if "class_top1_in_teacher_top5" in m:
        row["class_top1_in_teacher_top5"] = m["class_top1_in_teacher_top5"]["model"]
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own = load_checkpoint(args.weights).config.image_size
    sizes = [own, *(s for s in dict.fromkeys(args.network_size) if s != own)]
    runs: dict[str, dict[str, Any]] = {}
    rows = []
    for data in args.data:
        for size in sizes:
            summary = evaluate(
                args.weights,
                data,
                device="cpu",
                size=args.size,
                teacher=args.teacher,
                network_size=size,
                limit=args.limit,
                progress=False,
            )
            key = f"{data.name} @{size}"
            runs[key] = {"figures": figures(summary, args.size), "summary": summary}
            base = runs[f"{data.name} @{own}"]["figures"]
            got = runs[key]["figures"]
            rows.append(
                {
                    "set @ network size": key + (" (own)" if size == own else ""),
                    "dB over floor": got["psnr_over_floor_db"],
                    "- own": got["psnr_over_floor_db"] - base["psnr_over_floor_db"],
                    "% colour": 100 * got["colourfulness_share"],
                    "- own %": 100 * (got["colourfulness_share"] - base["colourfulness_share"]),
                    "b* - truth": got["b_mean_minus_truth"],
                    "class %": 100 * got.get("class_top1_in_teacher_top5", float("nan")),
                }
            )
    columns = ["set @ network size", "dB over floor", "- own", "% colour", "- own %"]
    print_table(rows, [*columns, "b* - truth", "class %"])
    payload = {
        "benchmark": "bench_network_size",
        "machine": machine_info(),
        "weights": str(args.weights),
        "own_size": own,
        "protocol_size": args.size,
        "teacher": args.teacher,
        "runs": runs,
    }
    write_result_in(args.out, "network-size-eval", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
