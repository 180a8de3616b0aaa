"""Atomic file writes: a temporary file beside the target, fsync, then a rename over it.

Every file napari-chromagan writes (images, checkpoints, evaluation tables, configs, settings)
goes through :func:`atomic_write`, so a crash or a full disk never leaves half a file under the
real name. Standard library only: cheap to import anywhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a fresh temporary file beside ``path``, fsync, then rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one; the temporary file
    (``.<name>.<12 hex>.part``) is removed on any error. Existence checks are the caller's.
    """
    path = Path(path)
    # open(..., "xb") rather than mkstemp, so the file gets the usual permissions (umask), not 0o600
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    fh = open(tmp, "xb")  # outside the try: on failure there is nothing of ours to remove
    try:
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
