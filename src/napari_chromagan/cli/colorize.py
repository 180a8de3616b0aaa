"""The ``colorize`` subcommand: colourise image files and folders into OUTDIR."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_chromagan.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    _error,
    _finite_float,
    _list_paths,
    _plural,
    _UsageError,
    _write,
    non_negative_int,
    positive_int,
)
from napari_chromagan.cli._torchrun import _remove_stale_parts, _torchrun_env, shard
from napari_chromagan.device import rank_device
from napari_chromagan.errors import CheckpointError, ChromaGANError, UnsupportedImageError, cli_text

_FORMATS = ("png", "jpeg", "jpg", "tiff", "tif", "webp")
_TIFF_SUFFIXES = (".tif", ".tiff")


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
        help="planes per network call (default: 8)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="the network's arithmetic (default: auto = bf16 autocast on CUDA, float32 elsewhere)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile: for long runs on a GPU; the first batch waits "
        "for the compilation (25-50 s on a CPU)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on CUDA, also replay the compiled network as a CUDA graph (implies --compile); "
        "ignored, with a note, on other devices",
    )
    p.add_argument(
        "--format",
        choices=_FORMATS,
        type=str.lower,
        metavar="{png,jpeg,tiff,webp}",
        help="output format (default: .tif for TIFF inputs and stacks, .jpg for JPEG, else .png)",
    )
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
        type=_finite_float,
        metavar=("LOW", "HIGH"),
        dest="value_range",
        help="intensity range mapped to black..white (implies --normalization manual)",
    )
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
    return p


def run_colorize(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    quiet: bool = args.quiet
    rank, world_size, local_rank = _torchrun_env()
    tag = f"[rank {rank}/{world_size}] " if world_size > 1 else ""

    def info(message: str) -> None:
        if not quiet:
            _write(f"{PROG}: {tag}{message}")

    def error(message: str) -> None:
        _error(f"{tag}{message}")

    if args.value_range is not None:
        low, high = args.value_range
        if not high > low:
            raise _UsageError(f"--range needs LOW < HIGH, got {low:g} {high:g}")
        if args.normalization not in ("auto", "manual"):
            raise _UsageError(
                f"--range applies to --normalization manual, not {args.normalization}"
            )
    elif args.normalization == "manual":
        raise _UsageError("--normalization manual needs --range LOW HIGH")

    out_dir = Path(args.output).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise _UsageError(f"output {out_dir} exists and is not a folder")

    from napari_chromagan import imageio

    inputs = imageio.collect_inputs(args.inputs)
    roots = [Path(a) for a in args.inputs if Path(a).is_dir()]
    if world_size > 1:
        # Another rank's fresh outputs would turn up in this rank's search, and the ranks
        # would then share out different lists.
        real_out = Path(os.path.realpath(out_dir))
        inside = [r for r in roots if real_out.is_relative_to(os.path.realpath(r))]
        if inside:
            raise _UsageError(
                f"under torchrun, OUTDIR {out_dir} must not be inside an input folder "
                f"({inside[0]}); choose an output folder outside it"
            )
    outputs = imageio.output_paths(inputs, out_dir, args.format, roots=roots)
    # An earlier run's outputs found again in a searched folder must not be overwritten while
    # they are being read: leave out any input that is one of this run's outputs.
    planned = {os.path.realpath(o) for o in outputs}
    own = [p for p in inputs if os.path.realpath(p) in planned]
    if own:
        inputs = [p for p in inputs if os.path.realpath(p) not in planned]
        info(
            f"ignoring {_plural(len(own), 'input')} that would be overwritten by this run's outputs"
        )
        if not inputs:
            raise FileNotFoundError("no images left to colourise")
        outputs = imageio.output_paths(inputs, out_dir, args.format, roots=roots)

    # Names are given over the whole list (so clashes resolve the same way on every rank),
    # then each rank keeps its share; from here on only this rank's files are looked at.
    taken = {o.name.casefold() for o in outputs}
    total_inputs = len(inputs)
    if world_size > 1:
        inputs, outputs = shard(inputs, rank, world_size), shard(outputs, rank, world_size)
        info(f"{len(inputs)} of {_plural(total_inputs, 'image')} are this process's share")
        if not inputs:
            return EXIT_OK

    existing = [o for o in outputs if o.exists()]
    if existing and not (args.overwrite or args.skip_existing):
        raise FileExistsError(
            f"{tag}{_plural(len(existing), 'output')} already "
            f"{'exists' if len(existing) == 1 else 'exist'} ({_list_paths(existing)}); "
            "pass --overwrite to replace them or --skip-existing to keep them"
        )
    jobs = list(zip(inputs, outputs, strict=True))
    skipped = 0
    if args.skip_existing:
        found = set(existing)
        stale = _remove_stale_parts([o for o in outputs if o not in found])
        if stale:
            info(f"removed {_plural(stale, 'temporary file')} left by an interrupted run")
    if existing and args.skip_existing:
        exists = set(existing)
        jobs = [(i, o) for i, o in jobs if o not in exists]
        skipped = len(inputs) - len(jobs)
        info(f"skipping {_plural(skipped, 'image')} whose output already exists")
    if not jobs:
        info(f"nothing to do: every output exists in {out_dir}")
        return EXIT_OK

    from napari_chromagan.atomic import check_writable

    # a read-only or misplaced output folder fails now, not once per image after the work
    check_writable(out_dir, what="the output folder", fix="choose another folder with -o, or make this one writable")

    import torch
    from tqdm import tqdm

    from napari_chromagan.colorize import Colorizer
    from napari_chromagan.device import select_device
    from napari_chromagan.weights import default_weights_note

    device = rank_device(args.device, local_rank) if world_size > 1 else args.device
    dev, _ = select_device(device)  # a wrong device fails before a large checkpoint is read
    compile_, cuda_graphs = _fast_path_flags(args, dev.type, info)
    colorizer = Colorizer.from_checkpoint(
        args.weights, device, precision=args.precision, compile=compile_, cuda_graphs=cuda_graphs
    )
    info(f"device: {colorizer.device_info}")
    info(f"weights: {colorizer.weights}")
    if (note := default_weights_note(colorizer.weights)) is not None:
        info(note)

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    # Failures of one image (unreadable, wrong shape, too large, disk full): report, go on.
    recoverable = (ChromaGANError, OSError, ValueError, MemoryError, out_of_memory)
    done = 0
    blank: list[Path] = []  # written, but every pixel was NaN or inf: uniform gray
    failures: list[Path] = []
    bar = tqdm(
        total=len(jobs),
        unit="image",
        desc=f"colourising {tag}".rstrip(),
        file=sys.stderr,
        # ranks share a terminal: one bar (rank 0's share) rather than several fighting
        disable=True if quiet or rank > 0 else None,
        dynamic_ncols=True,
    )
    try:
        for source, target in jobs:
            bar.set_postfix_str(source.name, refresh=False)
            try:
                written = _colorize_one(colorizer, source, target, args, taken, info, bar, quiet, blank)
            except CheckpointError:
                raise  # the network gives NaN with these weights: every other image would fail too
            except recoverable as exc:
                failures.append(source)
                message = cli_text(exc)
                if isinstance(exc, (MemoryError, out_of_memory)):
                    message = (
                        f"out of memory ({message.splitlines()[0]}); try --batch-size 1 "
                        "or --device cpu"
                    )
                if str(source) not in message:
                    message = f"{source}: {message}"
                error(message)
            else:
                if written:
                    done += 1
                else:
                    skipped += 1
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        complete = done + skipped
        error(
            f"interrupted after {done} of {_plural(len(jobs), 'image')} of this run "
            f"({complete} output{'s are' if complete != 1 else ' is'} complete in {out_dir}; nothing is "
            "half-written). Run the same command with --resume to colourise the rest"
        )
        return EXIT_INTERRUPTED
    finally:
        bar.close()

    seconds = time.perf_counter() - start
    summary = f"colourised {_plural(done, 'image')} into {out_dir} in {seconds:.1f} s"
    notes = [f"{skipped} skipped: output exists"] if skipped else []
    if blank:
        notes.append(f"{len(blank)} had no finite pixel (all NaN or inf) and came out uniform gray")
    info(f"{summary} ({'; '.join(notes)})" if notes else summary)
    if failures:
        total = len(jobs)
        error(f"{len(failures)} of {_plural(total, 'image')} failed")
        return EXIT_FAILED
    return EXIT_OK


def _fast_path_flags(args: argparse.Namespace, device_type: str, info: Callable[[str], None]) -> tuple[bool, bool]:
    """``(compile, cuda_graphs)`` for this device, saying so where a flag does nothing useful,
    before any time is spent compiling."""
    compile_, cuda_graphs = bool(args.compile), bool(args.cuda_graphs)
    if cuda_graphs and device_type != "cuda":
        info(
            f"note: --cuda-graphs does nothing on {device_type}: CUDA graphs need a CUDA GPU. Ignored"
            + ("; --compile still compiles" if compile_ else " (add --compile to compile the network anyway)")
        )
        cuda_graphs = False
    if compile_ and device_type != "cuda":
        info(
            f"note: --compile on {device_type}: torch.compile spends 25-50 s compiling before the first "
            "image, and on a 2-core CPU it was measured no faster than without it; it pays on long runs "
            "on a GPU. Leave it out unless you have measured a gain here"
        )
    return compile_, cuda_graphs


def _stack_planes(shape: tuple[int, ...]) -> int:
    """How many planes the engine sees in an array of this shape (as Colorizer decides)."""
    from napari_chromagan.colorize import image_layout

    spatial, _, _ = image_layout(shape)
    return math.prod(spatial[:-2])


def _select_channel(image: Any, channel: int, source: Path) -> Any:
    """``image[..., channel]`` when its last axis is a channel axis (``--channel``); else ``image``."""
    from napari_chromagan.colorize import MAX_CHANNELS

    if image.ndim < 3 or image.shape[-1] >= MAX_CHANNELS:
        return image  # no channel axis: a plain gray image or stack, colourised as it is
    if channel >= image.shape[-1]:
        raise UnsupportedImageError(
            f"{source} has {image.shape[-1]} channels (shape {tuple(image.shape)}), so --channel {channel} "
            f"does not exist; choose --channel 0 to {image.shape[-1] - 1}"
        )
    return image[..., channel]


def _colorize_one(
    colorizer: Any,
    source: Path,
    target: Path,
    args: argparse.Namespace,
    taken: set[str],
    info: Callable[[str], None],
    bar: Any,
    quiet: bool,
    blank: list[Path],
) -> bool:
    """Colourise one file; return False when it was skipped (its output exists).

    A file whose every pixel is NaN or inf is written (uniform gray), said and added to ``blank``.
    """
    from tqdm import tqdm

    from napari_chromagan import imageio
    from napari_chromagan.errors import MissingPixelsWarning

    max_pixels = imageio.DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    image = imageio.read_image(source, max_pixels=max_pixels or None)
    if args.channel is not None:
        image = _select_channel(image, args.channel, source)
    planes = _stack_planes(image.shape)
    if planes > 1 and target.suffix.lower() not in _TIFF_SUFFIXES:
        if args.format is not None:
            raise UnsupportedImageError(
                f"{source} is a stack of {planes} images, which {target.suffix} cannot hold; "
                "choose --format tiff"
            )
        # Only a TIFF holds a stack: switch this output to .tif, under a name not yet taken.
        taken.discard(target.name.casefold())
        stem, number = target.stem, 2
        target = target.with_suffix(".tif")
        while target.name.casefold() in taken:
            target = target.with_name(f"{stem}_{number}.tif")
            number += 1
        taken.add(target.name.casefold())
        info(f"{source} is a stack of {planes} images: writing it as TIFF, {target}")
        if target.exists():
            if args.skip_existing:
                info(f"skipping {source}: {target} exists")
                return False
            if not args.overwrite:
                raise FileExistsError(
                    f"{target} exists; pass --overwrite to replace it or --skip-existing to keep it"
                )

    plane_bar: Any = None

    def progress(count: int, total: int) -> None:
        nonlocal plane_bar
        if total <= 1:
            return
        if plane_bar is None:
            plane_bar = tqdm(
                total=total,
                unit="plane",
                desc=source.name,
                file=sys.stderr,
                leave=False,
                position=1,
                disable=True if quiet or bar.disable else None,
                dynamic_ncols=True,
            )
        plane_bar.update(count - plane_bar.n)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingPixelsWarning)
            result = colorizer.colorize(
                image,
                batch_size=args.batch_size,
                normalization=args.normalization,
                value_range=None if args.value_range is None else tuple(args.value_range),
                with_class=False,
                progress=progress,
            )
    finally:
        if plane_bar is not None:
            plane_bar.close()
    for warning in caught:
        if issubclass(warning.category, MissingPixelsWarning):
            _write(f"{PROG}: warning: {source}: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if result.missing is not None and result.missing.all():
        blank.append(source)
    del image
    hinted = None
    if getattr(args, "hints", None) is not None:
        from napari_chromagan.hints import (
            HintParams,
            apply_color_hints,
            describe_hints,
            read_hints_csv,
        )

        hints = read_hints_csv(args.hints, source.name)
        if not hints.is_empty:
            result = apply_color_hints(result, hints)
            hinted = describe_hints(hints, HintParams())
    record = None
    if args.provenance:
        from napari_chromagan.provenance import record_for

        # the weights' sha256 is hashed once per run
        record = record_for(colorizer, result, hints=hinted)
    imageio.write_image(target, result.rgb, overwrite=args.overwrite, provenance=record)
    return True
