"""The ``info`` subcommand: show the provenance record stored in image files, or what a
weights file (``.pt``) records about its network, training and evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from napari_chromagan.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _error


def register_info(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info",
        help="show how an image was colourised (its provenance record), or what weights are",
        description=(
            "Read the provenance record that `colorize` (and the plugin's writer in napari) "
            "stores in each output: that it was colourised by napari-chromagan, the version, the "
            "weights' name and sha256, the precision, the normalisation, any colour hints, and "
            "the date. Reads PNG, JPEG, WebP and TIFF files; only their metadata is read. For a "
            "weights file (.pt): its network, how it was trained and what it scored, as recorded "
            "by training and export (loaded without running code from it)."
        ),
        epilog=(
            "exit codes: 0 every file has a record; 1 some have none (not written by "
            "napari-chromagan, or written with --no-provenance); 2 a file could not be read or "
            "its record is damaged"
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="image files or weights files (.pt)")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per file on standard output: {"file": ..., "provenance": {...} or null}, '
        'or for weights {"file": ..., "weights": {"config": {...}, "metadata": {...}}}',
    )
    return p


def run_info(args: argparse.Namespace) -> int:
    from napari_chromagan.files.provenance import describe, read_provenance

    missing = unreadable = 0
    for name in args.files:
        path = Path(name)
        if path.suffix.lower() == ".pt":
            unreadable += not _weights_info(path, args.json)
            continue
        try:
            record = read_provenance(path)
        except (
            OSError,
            ValueError,
        ) as exc:  # UnsupportedImageError and ProvenanceError are ValueErrors
            unreadable += 1
            _file_error(path, exc)
            continue
        if record is None:
            missing += 1
        if args.json:
            print(json.dumps({"file": str(path), "provenance": record}, sort_keys=True))
        elif record is None:
            print(
                f"{path}: no napari-chromagan provenance record (not written by napari-chromagan, "
                "or written with --no-provenance)"
            )
        else:
            print(f"{path}:")
            for line in describe(record):
                print(f"  {line}")
    sys.stdout.flush()
    if unreadable:
        return EXIT_USAGE
    return EXIT_FAILED if missing else EXIT_OK


def _weights_info(path: Path, as_json: bool) -> bool:
    """Print what the weights file ``path`` records; False (after an error line) if it cannot be read."""
    import dataclasses

    from napari_chromagan.errors import CheckpointError
    from napari_chromagan.weights.checkpoint import load_checkpoint
    from napari_chromagan.weights.describe import describe_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        _file_error(path, exc)
        return False
    if as_json:
        weights = {"config": dataclasses.asdict(ckpt.config), "metadata": ckpt.metadata}
        print(json.dumps({"file": str(path), "weights": weights}, sort_keys=True, default=str))
    else:
        print(f"{path}: napari-chromagan weights")
        for line in describe_checkpoint(ckpt):
            print(f"  {line}")
    return True


def _file_error(path: Path, exc: Exception) -> None:
    """An error line about ``path``: the exception's message, prefixed by the path unless it names it."""
    message = str(exc) or type(exc).__name__
    _error(message if str(path) in message else f"{path}: {message}")
