"""Atomic file writes: a temporary file beside the target, fsync, then a rename over it.

Every file napari-chromagan writes (images, checkpoints, evaluation tables, configs, settings)
goes through :func:`atomic_write`, so a crash or a full disk never leaves half a file under the
real name. A process killed while writing can leave its temporary file behind (nothing runs
after SIGKILL); :func:`remove_stale_parts` clears those on the next start. :func:`check_writable`
finds a read-only or missing output folder before long work rather than after it. Standard
library only: cheap to import anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from napari_chromagan.errors import OutputError

__all__ = [
    "PART_PATTERN",
    "atomic_write",
    "atomic_write_text",
    "check_writable",
    "remove_stale_parts",
    "stale_parts",
]

# The temporary name atomic_write gives a file while writing it: ".<name>.<12 hex>.part".
PART_PATTERN = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.part")


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


def stale_parts(folder: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[Path]:
    """The temporary files :func:`atomic_write` left in ``folder`` (only those of ``names`` if given).

    Only a process killed while writing leaves one; a missing or unreadable folder has none.
    """
    folder = Path(folder)
    wanted = None if names is None else set(names)
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        match = PART_PATTERN.fullmatch(entry)
        if match and (wanted is None or match["name"] in wanted) and (folder / entry).is_file():
            found.append(folder / entry)
    return found


def remove_stale_parts(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None
) -> tuple[int, int]:
    """Remove :func:`stale_parts` of ``folder``; return how many files and bytes went.

    Call it only when no other process can be writing into ``folder`` at the same time (at the
    start of a run that owns the folder): a live writer's temporary file looks the same.
    """
    count = size = 0
    for path in stale_parts(folder, names):
        try:
            nbytes = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        count += 1
        size += nbytes
    return count, size


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc) or type(exc).__name__


def check_writable(
    folder: str | os.PathLike[str], *, what: str = "the output folder", fix: str = ""
) -> None:
    """Make sure files can be written into ``folder``, without creating it; raise if not.

    A folder that does not exist yet is fine when it could be created: the nearest existing
    folder above it is checked instead. The check writes (and removes) a small temporary file,
    so it sees read-only mounts, permissions, ACLs and immutable folders alike.

    Parameters
    ----------
    folder : path-like
        Where outputs will go.
    what : str
        How the message names ``folder`` (``"--out"``, ``"the output folder"``...).
    fix : str
        What the user can do, appended to the message (``"choose another -o folder"``).

    Raises
    ------
    OutputError
        ``folder`` (or a folder above it) is a file, or nothing can be written there.
    """
    folder = Path(folder).expanduser()
    tail = f"; {fix}" if fix else ""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            raise OutputError(f"{what} {folder} is a file, not a folder{tail}")
        raise OutputError(
            f"{what} {folder} cannot be created: {existing} is a file, not a folder{tail}"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".napari-chromagan-write-test-", dir=existing)
    except OSError as exc:
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise OutputError(
            f"cannot write into {what} {folder}{where}: {_reason(exc)}{tail}"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
