"""The ``napari`` subcommand: open napari with the plugin's widgets and a sample image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_chromagan.cli._common import _UsageError


def register_napari(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "napari",
        help="open napari with the Colorize, Class distribution and Chroma blend widgets and a sample",
        description=(
            "Open napari with the plugin's three dock widgets and a sample photograph from "
            "scikit-image, and colourise it with the default weights."
        ),
    )
    p.add_argument(
        "--sample",
        choices=("coffee", "camera"),
        default="coffee",
        help="coffee: a colour photograph in gray, with its original (default); camera: a gray photograph",
    )
    p.add_argument(
        "--no-run", dest="colorize", action="store_false", help="open without colourising"
    )
    p.add_argument(
        "--screenshot", metavar="PNG", help="save a screenshot of the window once done, then exit"
    )
    return p


def run_napari(args: argparse.Namespace) -> int:
    from napari_chromagan._widgets.launch import open_viewer

    if args.screenshot and Path(args.screenshot).exists():
        raise _UsageError(f"{args.screenshot} exists; remove it or choose another name")
    return open_viewer(args.sample, run=args.colorize, screenshot=args.screenshot)
