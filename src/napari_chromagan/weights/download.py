"""A resumable, verified download over plain ``urllib`` (no Qt, no torch).

:func:`download` streams into ``<dest>.part``, resumes an interrupted transfer with an HTTP
``Range`` request, checks the size and SHA-256 when they are known, and renames the finished
file into place, so ``dest`` is either absent or complete. :func:`~napari_chromagan.weights.registry.fetch`
uses it to get the weights that :data:`~napari_chromagan.weights.registry.REGISTRY` names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_chromagan import __version__
from napari_chromagan.errors import Cancelled, ChromaGANError
from napari_chromagan.files.checksum import file_sha256
from napari_chromagan.progress import CancelEvent

__all__ = ["DownloadError", "Progress", "download"]

# progress(done, total): bytes so far, and the total or None when the server does not say
Progress = Callable[[int, "int | None"], None]

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(ChromaGANError):
    """Weights could not be downloaded (network failure, transfer cut short, wrong checksum)."""


def _check_cancel(cancel: CancelEvent | None, part: Path) -> None:
    if cancel is not None and cancel.is_set():
        kept = part.stat().st_size if part.exists() else 0
        raise Cancelled(
            f"download cancelled; the {kept} bytes received are kept in {part}, and the next "
            "download of the same file resumes from there"
        )


def _open(url: str, start: int, timeout: float) -> Any:
    import urllib.request

    headers = {"User-Agent": f"napari-chromagan/{__version__}", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _reason(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _partial_file(dest: Path, size: int | None, overwrite: bool) -> tuple[Path, int]:
    """The ``.part`` file beside ``dest`` and how many of its bytes a resumed transfer keeps."""
    if dest.exists() and not overwrite:
        raise FileExistsError(
            f"{dest} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:  # longer than the real file: not ours, start over
        part.unlink()
        start = 0
    return part, start


def _open_from(url: str, part: Path, start: int, timeout: float) -> tuple[Any | None, int]:
    """The response for the bytes from ``start`` on, and the start it was asked for; None
    (with ``start``) when the server says the partial file already holds every byte."""
    import urllib.error

    try:
        return _open(url, start, timeout), start
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:
            raise
        # Range not satisfiable: the partial file may already be complete.
        match = _UNSATISFIABLE_RANGE.search(exc.headers.get("Content-Range", "") or "")
        exc.close()
        if match and int(match.group(1)) == start:
            return None, start
        part.unlink()
        return _open(url, 0, timeout), 0


def _range_sent(url: str, response: Any, part: Path, start: int) -> tuple[int, int | None]:
    """Where the response's bytes go in the file (``start``, or 0 to start over), and the
    file's total length (None when the server does not say)."""
    status = getattr(response, "status", None) or response.getcode()
    header = (response.headers.get("Content-Length") or "").strip()
    length = int(header) if header.isdigit() else None
    content_range = _CONTENT_RANGE.search(response.headers.get("Content-Range", "") or "")
    if status == 206 and content_range is not None:
        first, last, whole = content_range.groups()
        if int(first) != start:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} sent bytes from {first} when {start} were asked for; the "
                "partial file was removed, download again to start over"
            )
        return start, int(whole) if whole != "*" else int(last) + 1
    if status == 206 and start:  # no Content-Range: trust that it honoured the Range
        return start, start + length if length is not None else None
    # a fresh download, or a server that ignored the Range request: start over
    return 0, length


def _stream(
    response: Any,
    part: Path,
    start: int,
    total: int | None,
    *,
    progress: Progress | None,
    cancel: CancelEvent | None,
    chunk: int,
) -> int:
    """Append the response's bytes to ``part`` (or write them afresh when ``start`` is 0);
    return the length of ``part`` afterwards."""
    done = start
    with part.open("ab" if start else "wb") as f:
        if progress is not None:
            progress(done, total)
        while True:
            _check_cancel(cancel, part)
            block = response.read(chunk)
            if not block:
                break
            f.write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return done


def _receive(
    url: str,
    part: Path,
    start: int,
    *,
    timeout: float,
    progress: Progress | None,
    cancel: CancelEvent | None,
    chunk: int,
) -> None:
    """Bring ``part`` up to the whole file, resuming after its first ``start`` bytes."""
    response, start = _open_from(url, part, start, timeout)
    total: int | None
    if response is None:
        total = done = start
        if progress is not None:
            progress(done, total)
    else:
        with response:
            start, total = _range_sent(url, response, part, start)
            done = _stream(
                response, part, start, total, progress=progress, cancel=cancel, chunk=chunk
            )
    if total is not None and done < total:
        raise DownloadError(
            f"the transfer from {url} was cut short after {done} of {total} bytes; the "
            f"bytes received are kept in {part} and the next download resumes from there"
        )


def _transfer(
    url: str,
    part: Path,
    start: int,
    *,
    timeout: float,
    progress: Progress | None,
    cancel: CancelEvent | None,
    chunk: int,
) -> None:
    """:func:`_receive`, with network and file errors turned into a :class:`DownloadError`
    that says where the bytes received are kept."""
    # imported here, so that the command line's --help does not pay for http and email
    import http.client
    import urllib.error

    try:
        _receive(url, part, start, timeout=timeout, progress=progress, cancel=cancel, chunk=chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # URLError and HTTPError are OSErrors too; timeouts and refused connections as well.
        where = (
            f"; the {part.stat().st_size} bytes received are kept in {part} for resuming"
            if part.is_file() and part.stat().st_size
            else ""
        )
        raise DownloadError(f"could not download {url}: {_reason(exc)}{where}") from exc


def _verify(url: str, part: Path, size: int | None, sha256: str | None) -> None:
    """Check the finished ``part`` against the expected size and digest; remove it if wrong."""
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(
            f"the download from {url} has {got} bytes but {size} were expected; the size (and so "
            "the checksum) did not match, and the file was removed"
        )
    if sha256 is not None:
        digest = file_sha256(part)
        if digest.lower() != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"the SHA-256 checksum did not match for the download from {url} (expected "
                f"{sha256}, got {digest}); the file was removed"
            )


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
    timeout: float = 30,
    chunk: int = 1 << 16,
    overwrite: bool = False,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial download; return ``dest``.

    Bytes go to ``<dest>.part``. When that file exists, the transfer resumes with an HTTP
    ``Range: bytes=N-`` request; a server that answers 200 instead sends the whole file, and the
    partial file is started over. ``dest`` appears (atomically, by rename) only once every byte
    has arrived and the size and SHA-256 match when given.

    Parameters
    ----------
    url : str
        An ``http(s)://`` (or ``file://``) address.
    dest : path-like
        The final file; its folder is created.
    sha256, size : optional
        Expected hex digest and length in bytes; a mismatch removes the file.
    progress : callable, optional
        ``progress(done, total)`` after each chunk (bytes so far, including resumed ones; the
        total, or None when the server does not say).
    cancel : object with ``is_set()``, optional
        Checked between chunks (a ``threading.Event``).
    timeout : float
        Seconds to wait for the connection and for each read.
    chunk : int
        Bytes per read.
    overwrite : bool
        Replace an existing ``dest``; without it an existing ``dest`` is refused.

    Raises
    ------
    FileExistsError
        ``dest`` exists and ``overwrite`` is False (nothing is downloaded).
    DownloadError
        The server could not be reached or refused, the transfer broke off (the bytes received
        are kept in the ``.part`` file for the next attempt), or the size or checksum did not
        match (the file is removed).
    Cancelled
        ``cancel`` was set; the ``.part`` file is kept for resuming.
    """
    dest = Path(dest).expanduser()
    part, start = _partial_file(dest, size, overwrite)
    _check_cancel(cancel, part)
    _transfer(url, part, start, timeout=timeout, progress=progress, cancel=cancel, chunk=chunk)
    _verify(url, part, size, sha256)
    os.replace(part, dest)
    return dest
