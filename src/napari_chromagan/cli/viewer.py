"""The ``napari`` subcommand: open napari with the plugin's widgets and a sample image."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
        "--screenshot",
        metavar="PNG",
        help="save a screenshot of the window once done, then exit (on a machine without a display, "
        "napari runs on a virtual one: Xvfb)",
    )
    return p


def _has_display() -> bool:
    if sys.platform != "linux":
        return True  # macOS and Windows always have a window server for the session
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@contextlib.contextmanager
def _virtual_display() -> Iterator[str]:
    """Run an Xvfb server for the duration of the block, with ``DISPLAY`` pointing at it."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise _UsageError(
            "there is no display and no Xvfb to make one: install it (`bash scripts/setup.sh` does, "
            "or `apt-get install xvfb`), or run on a machine with a desktop"
        )
    read, write = os.pipe()
    server = subprocess.Popen(
        # -terminate: the server exits by itself when its last client (this process's Qt)
        # disconnects, at our exit; see the finally below
        [
            xvfb,
            "-displayfd",
            str(write),
            "-screen",
            "0",
            "1920x1200x24",
            "-nolisten",
            "tcp",
            "-terminate",
        ],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            number = pipe.readline().decode().strip()  # Xvfb writes its display number when ready
        if not number.isdigit():
            raise _UsageError(f"Xvfb ({xvfb}) did not start a display (exit code {server.poll()})")
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = f":{number}"
        try:
            yield os.environ["DISPLAY"]
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
    finally:
        if _qt_connected():
            # Killing the server now would race Qt's X11 reader thread, which lives until the
            # interpreter exits: under load it saw the connection break first and the process
            # died with SIGSEGV. The server goes when Qt disconnects (-terminate).
            pass
        else:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _qt_connected() -> bool:
    """Whether a Qt application (hence an X11 connection) exists in this process."""
    qt = sys.modules.get("qtpy.QtWidgets")
    return qt is not None and qt.QApplication.instance() is not None


def run_napari(args: argparse.Namespace) -> int:
    if args.screenshot and Path(args.screenshot).exists():
        raise _UsageError(f"{args.screenshot} exists; remove it or choose another name")
    if _has_display():
        return _open(args)
    if not args.screenshot:
        raise _UsageError(
            "there is no display (DISPLAY is not set), so napari's window could not be seen: add "
            "--screenshot shot.png to colourise the sample headless and save a picture of the window, "
            "or run on a machine with a desktop"
        )
    with _virtual_display() as display:
        print(
            f"napari-chromagan: no display, so napari runs on a virtual one (Xvfb {display})",
            file=sys.stderr,
        )
        return _open(args)


def _open(args: argparse.Namespace) -> int:
    from napari_chromagan.napari._widgets.launch import open_viewer

    return open_viewer(args.sample, run=args.colorize, screenshot=args.screenshot)
