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
* ``info FILE... [--json]``: show the provenance record stored in image files (how and with
  what they were colourised; see `napari_chromagan.files.provenance`).
* ``napari [--sample NAME] [--no-run] [--screenshot PNG]``: open napari with the plugin's
  widgets and a sample image, colourised.

Exit codes: 0 success; 1 some images failed (the others were written); 2 a usage or input
problem (bad arguments, missing inputs or weights, an unusable checkpoint or device, outputs
that exist), nothing written; 130 interrupted (outputs are written atomically, so no partial
files are left behind).

Torch, numpy and the engine are imported only inside the commands, so ``--help`` is instant.
Each subcommand is a ``(register, run)`` pair: ``register`` adds its parser, ``run`` takes the
parsed arguments and returns the exit code; add new ones to `COMMANDS`.

The subcommands live in ``colorize``, ``info``, ``weights`` and ``viewer``; what they share
(exit codes, usage errors, argparse types) in ``_common``; the torchrun sharding in ``_torchrun``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from napari_chromagan import __version__
from napari_chromagan.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    _error,
    _UsageError,
    positive_int,
)
from napari_chromagan.cli._torchrun import shard
from napari_chromagan.cli.colorize import register_colorize, run_colorize
from napari_chromagan.cli.info import register_info, run_info
from napari_chromagan.cli.viewer import register_napari, run_napari
from napari_chromagan.cli.weights import (
    register_download_weights,
    register_import_weights,
    run_download_weights,
    run_import_weights,
)
from napari_chromagan.errors import ChromaGANError, cli_text

__all__ = ["main", "positive_int", "shard"]

# (register, run) pairs; register(subparsers) adds the subcommand's parser.
COMMANDS: tuple[
    tuple[Callable[[Any], argparse.ArgumentParser], Callable[[argparse.Namespace], int]], ...
] = (
    (register_colorize, run_colorize),
    (register_import_weights, run_import_weights),
    (register_napari, run_napari),
    (register_download_weights, run_download_weights),
    (register_info, run_info),
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
        _error(cli_text(exc))
        return EXIT_USAGE
