"""The ``colorize`` subcommand's arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_chromagan.argtypes import size_multiple_of_32
from napari_chromagan.cli._common import finite_float, non_negative_int, positive_int

FORMATS = ("png", "jpeg", "jpg", "tiff", "tif", "webp")


def register_colorize(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "colorize",
        help="colourise image files or folders",
        description=(
            "Colourise grayscale (or colour) images with ChromaGAN and write "
            "<stem>_colorized.<ext> files into OUTDIR. Folders are searched recursively for "
            "PNG, JPEG, TIFF, WebP and BMP files. Multi-page TIFF stacks are colourised plane "
            "by plane and written as multi-page RGB TIFF. Existing outputs are never replaced "
            "unless --overwrite is given. Launched by torchrun (WORLD_SIZE > 1), each process "
            "colourises every WORLD_SIZE-th file starting at its RANK, on cuda:LOCAL_RANK with "
            "--device auto or cuda, and prints its own summary; no process group is needed."
        ),
        epilog=(
            "exit codes: 0 success; 1 some images failed (the others were written); "
            "2 usage or input problem, nothing written; 130 interrupted (under torchrun: "
            "each process its own). "
            "Weights: --weights, else $NAPARI_CHROMAGAN_WEIGHTS, else the user cache "
            "(filled by `import-weights`). Resume an interrupted run, with or without "
            "torchrun, by running it again with --resume: outputs are written atomically, so "
            "each one that exists is complete."
        ),
    )
    _add_engine_args(p)
    _add_input_args(p)
    _add_output_args(p)
    return p


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument(
        "-o",
        "--output",
        "--out-dir",
        dest="output",
        metavar="OUTDIR",
        required=True,
        help="output folder (created if missing)",
    )
    p.add_argument(
        "--weights",
        metavar="W",
        help="checkpoint file (default: $NAPARI_CHROMAGAN_WEIGHTS, then the user cache)",
    )
    p.add_argument(
        "--device",
        default="auto",
        metavar="{auto,cpu,cuda,cuda:N,mps}",
        help="compute device (default: auto = CUDA, then MPS, then CPU)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="B",
        help="planes per network call; small images are packed B to a call (default: 8)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="the network's arithmetic (default: auto = bf16 autocast on CUDA and on CPUs with "
        "native bf16, float32 elsewhere)",
    )
    p.add_argument(
        "--network-size",
        type=size_multiple_of_32,
        metavar="S",
        help="the network size, a multiple of 32 (default: the weights' own; planes that are not "
        "square keep their aspect ratio at that area). "
        "EfficientNet-family weights (the shipped default) run at any: smaller is faster with "
        "broader, more saturated colour, larger follows finer detail; the authors' VGG16 model "
        "runs at 224 only. Outputs are always full resolution",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile: for long runs; the first batch of each size "
        "waits for the compilation (5-20 s on a CPU)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on CUDA, also replay the compiled network as a CUDA graph (implies --compile); "
        "ignored, with a note, on other devices",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        type=str.lower,
        metavar="{png,jpeg,tiff,webp}",
        help="output format (default: .tif for TIFF inputs and stacks, .jpg for JPEG, else .png)",
    )


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--normalization",
        choices=("auto", "dtype", "percentile", "manual"),
        default="auto",
        help=(
            "how intensities map to lightness: dtype range, 0.5-99.5 %% percentiles of each "
            "image or stack, or --range (default: auto = dtype for 8-bit and colour images, "
            "percentile otherwise; manual when --range is given)"
        ),
    )
    p.add_argument(
        "--channel",
        type=non_negative_int,
        metavar="N",
        help=(
            "for images whose last axis holds a few channels, e.g. (H, W, 2) TIFFs, colourise "
            "channel N (0 = the first); such images are refused without it. Images without a "
            "channel axis are colourised as they are"
        ),
    )
    p.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=None,
        metavar="N",
        help=(
            "refuse PNG, JPEG, WebP and BMP images of more than N pixels, the guard against "
            "decompression bombs (default: Pillow's 178956970); raise it for genuine huge scans, "
            "0 for no limit"
        ),
    )
    p.add_argument(
        "--range",
        nargs=2,
        type=finite_float,
        metavar=("LOW", "HIGH"),
        dest="value_range",
        help="intensity range mapped to black..white (implies --normalization manual)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace outputs that already exist"
    )
    existing.add_argument(
        "--skip-existing",
        "--resume",
        dest="skip_existing",
        action="store_true",
        help=(
            "leave inputs whose output already exists alone; the way to resume an interrupted "
            "run (temporary files it left are removed)"
        ),
    )
    p.add_argument(
        "--hints",
        type=Path,
        metavar="CSV",
        help=(
            "colour hints, applied after colourisation: a CSV with one point per row, "
            "'x, y[, plane], colour' (#rrggbb or 'r g b'), or with a header naming x, y, plane, "
            "colour, radius and file (a file column gives rows for one input by name)"
        ),
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars or information lines; errors only",
    )
    p.add_argument(
        "--no-provenance",
        dest="provenance",
        action="store_false",
        help=(
            "do not store the provenance record in the outputs' metadata. By default every output "
            "says, in its own format's metadata (PNG text, TIFF ImageDescription, JPEG comment, WebP "
            "XMP), that it was colourised by napari-chromagan, with the version, the weights' name "
            "and sha256, the precision, the normalisation and the date; `napari-chromagan info FILE` "
            "shows it"
        ),
    )
