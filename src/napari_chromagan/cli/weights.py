"""The ``import-weights`` and ``download-weights`` subcommands: weights into the user cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from napari_chromagan.cli._common import EXIT_OK, PROG, _UsageError, _write


def register_import_weights(subparsers: Any) -> argparse.ArgumentParser:
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


def run_import_weights(args: argparse.Namespace) -> int:
    from pathlib import Path

    from napari_chromagan.weights.keras_import import (
        CHECKPOINT_NAME,
        import_keras_weights_to_checkpoint,
    )
    from napari_chromagan.weights.lookup import user_weights_dir

    target = Path(args.output).expanduser() if args.output else user_weights_dir() / CHECKPOINT_NAME
    if target.is_file() and not args.overwrite:
        raise _UsageError(
            f"{target} already exists; pass --overwrite to replace it, or -o to write elsewhere"
        )
    try:
        written = import_keras_weights_to_checkpoint(args.h5, target, overwrite=args.overwrite)
    except ImportError as exc:
        raise _UsageError(str(exc)) from None
    print(f"{PROG}: wrote {written}", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- download-weights


def register_download_weights(subparsers: Any) -> argparse.ArgumentParser:
    from napari_chromagan.weights.registry import REGISTRY

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


def _print_weights_list() -> None:
    """One line per known weights: name, available or missing, description and file."""
    from napari_chromagan.weights import registry

    rows = [(e.name, registry.entry_status(e.name), e) for e in registry.REGISTRY.values()]
    width = max(len(name) for name, _, _ in rows)
    for name, status, entry in rows:
        path = registry.entry_path(name)
        where = f" ({path})" if path is not None else ""
        print(f"{name:<{width}}  {status:<9}  {entry.description}{where}", flush=True)


def run_download_weights(args: argparse.Namespace) -> int:
    from napari_chromagan.weights import registry

    if args.list:
        _print_weights_list()
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

    from napari_chromagan.weights.lookup import user_weights_dir

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
        _write(
            f"{PROG}: the partial download is kept in {user_weights_dir()}; "
            "run the command again to resume it"
        )
        raise
    finally:
        bar.close()
    print(f"{PROG}: {entry.name} is available: {path}", flush=True)
    return EXIT_OK
