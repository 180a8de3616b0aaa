"""The ``napari-chromagan`` command line (also ``python -m napari_chromagan``).

Subcommands:

* ``colorize INPUT... -o OUTDIR``: colourise image files and folders (recursively), writing
  ``<stem>_colorized.<ext>`` files. Multi-page TIFF stacks are colourised plane by plane and
  written as multi-page RGB TIFF. Under ``torchrun`` each process colourises its share of the
  files (see `shard`); ``--skip-existing`` (alias ``--resume``) resumes an interrupted run.
* ``import-weights FILE.h5 [-o OUT] [--overwrite]``: convert the authors' Keras weights into a
  checkpoint (by default in the user cache, where ``colorize`` and the plugin find it).
* ``download-weights [NAME] [--list] [--overwrite]``: download known weights into the user cache
  (converting the authors' Keras file); ``--list`` shows what is known and what is available.

Exit codes: 0 success; 1 some images failed (the others were written); 2 a usage or input
problem (bad arguments, missing inputs or weights, an unusable checkpoint or device, outputs
that exist), nothing written; 130 interrupted (outputs are written atomically, so no partial
files are left behind).

Torch, numpy and the engine are imported only inside the commands, so ``--help`` is instant.
Each subcommand is a ``(register, run)`` pair: ``register`` adds its parser, ``run`` takes the
parsed arguments and returns the exit code; add new ones (``import-weights``...) to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from napari_chromagan import __version__
from napari_chromagan.errors import ChromaGANError, UnsupportedImageError

__all__ = ["main", "positive_int", "shard"]

_T = TypeVar("_T")

PROG = "napari-chromagan"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_FORMATS = ("png", "jpeg", "jpg", "tiff", "tif", "webp")
_TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_LISTED = 5
# The temporary name imageio.write_image gives a file while writing it: ".<name>.<12 hex>.part".
_PART = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.part")


class _UsageError(Exception):
    """A problem with the arguments found after parsing; reported like argparse's errors."""


# --------------------------------------------------------------------------- small helpers


def _error(message: str) -> None:
    _write(f"{PROG}: error: {message}")


def _write(message: str) -> None:
    """One line on stderr, without breaking a progress bar that is being drawn there."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(message, file=sys.stderr, flush=True)
    else:
        tqdm.write(message, file=sys.stderr)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _list_paths(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (also used by ``python -m training evaluate``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# --------------------------------------------------------------------------- torchrun


def _torchrun_env() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as torchrun sets them; ``(0, 1, 0)`` without torchrun.

    The same variables as ``training/distributed.py`` reads, but no process group is set up:
    the processes share no tensors, so plain torchrun (one machine or several through its
    rendezvous, where RANK and WORLD_SIZE are global) is all it takes.
    """
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, "").strip()
        try:
            values[name] = int(text) if text else default
        except ValueError:
            raise _UsageError(f"${name} must be a whole number, got {text!r}") from None
    rank, world_size, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise _UsageError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}, "
            f"LOCAL_RANK={local_rank}"
        )
    return rank, world_size, local_rank


def shard(items: Sequence[_T], rank: int, world_size: int) -> list[_T]:
    """This process's share of `items`: those at positions ``i % world_size == rank``.

    Every process computes the same input list from the same arguments, so the shares are
    disjoint, cover all items and differ in size by at most one, with no communication.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def _rank_device(device: str, local_rank: int) -> str:
    """Under torchrun, "auto" (when CUDA exists) and "cuda" mean this process's local GPU."""
    if device.strip().lower() in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
    return device


def _remove_stale_parts(targets: Sequence[Path]) -> int:
    """Remove temporary files a killed run left next to `targets`; return how many."""
    wanted = {(t.parent, t.name) for t in targets}
    removed = 0
    for folder in {t.parent for t in targets}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _PART.fullmatch(name)
            if match and (folder, match["name"]) in wanted:
                try:
                    os.unlink(folder / name)
                except OSError:
                    continue
                removed += 1
    return removed


# --------------------------------------------------------------------------- colorize


def _register_colorize(subparsers: Any) -> argparse.ArgumentParser:
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
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars or information lines; errors only",
    )
    return p


def _run_colorize(args: argparse.Namespace) -> int:
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

    import torch
    from tqdm import tqdm

    from napari_chromagan.colorize import Colorizer, select_device

    device = _rank_device(args.device, local_rank) if world_size > 1 else args.device
    select_device(device)  # a wrong device fails before a large checkpoint is read
    colorizer = Colorizer.from_checkpoint(args.weights, device)
    info(f"device: {colorizer.device_info}")
    info(f"weights: {colorizer.weights}")

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    # Failures of one image (unreadable, wrong shape, too large, disk full): report, go on.
    recoverable = (ChromaGANError, OSError, ValueError, MemoryError, out_of_memory)
    done = 0
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
                written = _colorize_one(colorizer, source, target, args, taken, info, bar, quiet)
            except recoverable as exc:
                failures.append(source)
                message = str(exc) or type(exc).__name__
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
    finally:
        bar.close()

    seconds = time.perf_counter() - start
    summary = f"colourised {_plural(done, 'image')} into {out_dir} in {seconds:.1f} s"
    info(f"{summary} ({skipped} skipped: output exists)" if skipped else summary)
    if failures:
        total = len(jobs)
        error(f"{len(failures)} of {_plural(total, 'image')} failed")
        return EXIT_FAILED
    return EXIT_OK


def _stack_planes(shape: tuple[int, ...]) -> int:
    """How many planes the engine sees in an array of this shape (as Colorizer decides)."""
    rgb = len(shape) >= 3 and shape[-1] in (3, 4)
    spatial = shape[:-1] if rgb else shape
    return math.prod(spatial[:-2])


def _colorize_one(
    colorizer: Any,
    source: Path,
    target: Path,
    args: argparse.Namespace,
    taken: set[str],
    info: Callable[[str], None],
    bar: Any,
    quiet: bool,
) -> bool:
    """Colourise one file; return False when it was skipped (its output exists)."""
    from tqdm import tqdm

    from napari_chromagan import imageio

    image = imageio.read_image(source)
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
    del image
    imageio.write_image(target, result.rgb, overwrite=args.overwrite)
    return True


# --------------------------------------------------------------------------- import-weights


def _register_import_weights(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import-weights",
        help="convert the authors' Keras weights (.h5) into a napari-chromagan checkpoint",
        description=(
            "Convert the ChromaGAN authors' Keras weights (my_model_colorization.h5) into a "
            "napari-chromagan checkpoint, by default in the user cache where the plugin and "
            "`colorize` find it. Every layer's shape is checked. Needs h5py: "
            'pip install "napari-chromagan[keras]".'
        ),
        epilog="exit codes: 0 written; 2 unreadable or unsuitable file, or OUT exists.",
    )
    p.add_argument("h5", metavar="FILE.h5", help="the authors' Keras weights file")
    p.add_argument(
        "-o",
        "--output",
        dest="output",
        metavar="OUT",
        help="checkpoint to write (default: chromagan-imagenet.pt in the user cache)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def _run_import_weights(args: argparse.Namespace) -> int:
    from napari_chromagan.keras_import import import_keras_weights_to_checkpoint

    try:
        written = import_keras_weights_to_checkpoint(args.h5, args.output, overwrite=args.overwrite)
    except ImportError as exc:
        raise _UsageError(str(exc)) from None
    print(f"{PROG}: wrote {written}", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- download-weights


def _register_download_weights(subparsers: Any) -> argparse.ArgumentParser:
    from napari_chromagan.registry import REGISTRY

    names = ", ".join(REGISTRY)
    p = subparsers.add_parser(
        "download-weights",
        help="download known weights (the authors' ImageNet model) into the user cache",
        description=(
            "Download weights by name into the user cache, where the plugin and `colorize` find "
            "them; the authors' Keras file is converted into a checkpoint and then removed. An "
            "interrupted download resumes where it stopped. Needs h5py for the authors' file: "
            'pip install "napari-chromagan[keras]".'
        ),
        epilog=(
            f"known weights: {names}. exit codes: 0 available; 2 unknown name, download or "
            "conversion failed (the message says how to get the file by hand); 130 interrupted "
            "(the partial download is kept and resumed next time)."
        ),
    )
    p.add_argument("name", nargs="?", metavar="NAME", help=f"the weights to download ({names})")
    p.add_argument(
        "--list", action="store_true", help="list the known weights and whether they are here"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="download and convert again even if available"
    )
    # Addresses to try instead of the registry's (tests, mirrors); not advertised.
    p.add_argument("--url", action="append", dest="urls", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; errors only")
    return p


def _run_download_weights(args: argparse.Namespace) -> int:
    from napari_chromagan import registry

    if args.list:
        rows = [(e.name, registry.entry_status(e.name), e) for e in registry.REGISTRY.values()]
        width = max(len(name) for name, _, _ in rows)
        for name, status, entry in rows:
            path = registry.entry_path(name)
            where = f" ({path})" if path is not None else ""
            print(f"{name:<{width}}  {status:<9}  {entry.description}{where}", flush=True)
        if args.name is None:
            return EXIT_OK
    if args.name is None:
        raise _UsageError(
            f"name the weights to download ({', '.join(registry.REGISTRY)}), or pass --list"
        )
    if args.name not in registry.REGISTRY:
        raise _UsageError(
            f"unknown weights {args.name!r}; known weights: {', '.join(registry.REGISTRY)}"
        )

    from tqdm import tqdm

    from napari_chromagan.weights import user_weights_dir

    entry = registry.REGISTRY[args.name]
    bar = tqdm(
        total=None,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=entry.filename,
        file=sys.stderr,
        disable=True if args.quiet else None,
        dynamic_ncols=True,
    )

    def progress(done: int, total: int | None) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done  # not update(): a retry from another address starts again from its own offset
        bar.refresh()

    def info(message: str) -> None:
        if not args.quiet:
            _write(f"{PROG}: {message}")

    try:
        path = registry.fetch(
            args.name, progress=progress, overwrite=args.overwrite, urls=args.urls, log=info
        )
    except ImportError as exc:
        raise _UsageError(str(exc)) from None
    except KeyboardInterrupt:
        bar.close()
        _write(f"{PROG}: the partial download is kept in {user_weights_dir()}; "
               "run the command again to resume it")
        raise
    finally:
        bar.close()
    print(f"{PROG}: {entry.name} is available: {path}", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- napari


def _register_napari(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "napari",
        help="open napari with the Colorize, Class distribution and Chroma blend widgets and a sample",
        description=(
            "Open napari with the plugin's three dock widgets and a sample photograph from "
            "scikit-image, and colourise it with the default weights."
        ),
    )
    p.add_argument("--sample", choices=("coffee", "camera"), default="coffee",
                   help="coffee: a colour photograph in gray, with its original (default); camera: a gray photograph")
    p.add_argument("--no-run", dest="colorize", action="store_false", help="open without colourising")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window once done, then exit")
    return p


def _run_napari(args: argparse.Namespace) -> int:
    from napari_chromagan._widgets.launch import open_viewer

    if args.screenshot and Path(args.screenshot).exists():
        raise _UsageError(f"{args.screenshot} exists; remove it or choose another name")
    return open_viewer(args.sample, run=args.colorize, screenshot=args.screenshot)


# --------------------------------------------------------------------------- entry point

# (register, run) pairs; register(subparsers) adds the subcommand's parser.
COMMANDS: tuple[
    tuple[Callable[[Any], argparse.ArgumentParser], Callable[[argparse.Namespace], int]], ...
] = (
    (_register_colorize, _run_colorize),
    (_register_import_weights, _run_import_weights),
    (_register_napari, _run_napari),
    (_register_download_weights, _run_download_weights),
)


def _prog() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m napari_chromagan" if argv0 == "__main__.py" else PROG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="ChromaGAN automatic colourisation from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register, run in COMMANDS:
        register(subparsers).set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (argparse's own errors give 2, --help 0)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (ChromaGANError, FileNotFoundError, FileExistsError, OSError, ValueError) as exc:
        # Missing inputs or weights, unusable checkpoint or device, outputs in the way.
        _error(str(exc) or type(exc).__name__)
        return EXIT_USAGE
