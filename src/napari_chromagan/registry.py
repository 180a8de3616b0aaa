"""Known weights, where they are published, and a resumable, verified download (no Qt).

:data:`REGISTRY` names the weights the package knows about. ``chromagan-imagenet`` is the
authors' ImageNet generator, published as a Keras file (docs: chromagan-spec.md §5.1);
:func:`fetch` downloads it into the user cache (:func:`~napari_chromagan.weights.user_weights_dir`)
and converts it into ``chromagan-imagenet.pt`` there, where the plugin and the command line look
first. ``chromagan-lite0`` is the small default model shipped inside the package.

:func:`download` is plain ``urllib``: it streams into ``<dest>.part``, resumes an interrupted
transfer with an HTTP ``Range`` request, checks the size and SHA-256 when they are known, and
renames the finished file into place, so ``dest`` is either absent or complete.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import __version__
from .errors import Cancelled, CheckpointError, ChromaGANError, WeightsNotFoundError
from .progress import CancelEvent

if TYPE_CHECKING:
    from .model import ModelConfig

__all__ = [
    "REGISTRY",
    "DownloadError",
    "WeightsEntry",
    "download",
    "entry_path",
    "entry_status",
    "fetch",
]

Progress = Callable[[int, "int | None"], None]
Status = Literal["available", "missing"]


class DownloadError(ChromaGANError):
    """Weights could not be downloaded (network failure, transfer cut short, wrong checksum)."""


@dataclass(frozen=True)
class WeightsEntry:
    """One set of weights the package knows how to get.

    ``kind``: ``"keras-h5"`` is downloaded from ``urls`` as ``filename`` and converted into the
    checkpoint ``checkpoint_name`` in the user cache; ``"checkpoint"`` is downloaded as a
    napari-chromagan checkpoint; ``"packaged"`` ships inside the package. ``size`` (bytes) and
    ``sha256`` are checked after a download when known. ``manual_steps`` says how to get the
    weights by hand when the download fails.
    """

    name: str
    description: str
    urls: tuple[str, ...]
    filename: str
    size: int | None
    sha256: str | None
    kind: Literal["keras-h5", "checkpoint", "packaged"]
    checkpoint_name: str
    manual_steps: str


_IMAGENET_MANUAL = (
    "To get the weights by hand: open the Google Drive folder "
    "https://drive.google.com/drive/folders/12s4rbLmnjW4e8MmESbfRStGbrjOrahlW in a browser "
    "(the file alone: https://drive.google.com/file/d/12hyrk6A3bcpAFIBNW0sfeEevJ9daUTGr/view), "
    "download my_model_colorization.h5, then run "
    "`napari-chromagan import-weights my_model_colorization.h5`."
)

REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="chromagan-imagenet",
            description=(
                "the authors' ChromaGAN generator trained on ImageNet (Keras h5, converted "
                "after download)"
            ),
            urls=(
                "http://gpi.upf.edu/chromagan/my_model_colorization.h5",
                "http://dev.ipol.im/~lraad/chromaGAN/model/my_model_colorization.h5",
            ),
            filename="my_model_colorization.h5",
            # Size and SHA-256 are unknown: the file could not be fetched where this was written
            # (no network), so only the HDF5 signature and the importer's shape checks guard it.
            size=None,
            sha256=None,
            kind="keras-h5",
            checkpoint_name="chromagan-imagenet.pt",
            manual_steps=_IMAGENET_MANUAL,
        ),
        WeightsEntry(
            name="chromagan-lite0",
            description=(
                "small default model shipped with the package (EfficientNet-Lite0 trunk, width 0.5, "
                "128 px, trained on a CPU; far "
                "weaker than chromagan-imagenet)"
            ),
            urls=(),
            filename="chromagan-lite0.pt",
            size=None,
            sha256=None,
            kind="packaged",
            checkpoint_name="chromagan-lite0.pt",
            manual_steps=(
                "The default model ships inside the package; reinstall napari-chromagan "
                "(`pip install --force-reinstall napari-chromagan`) to get it back."
            ),
        ),
    )
}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def _entry(name: str) -> WeightsEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ValueError(f"unknown weights {name!r}; known weights: {known}") from None


def _packaged_path() -> Path:
    from . import weights  # read at call time: tests redirect weights.PACKAGED_WEIGHTS

    return weights.PACKAGED_WEIGHTS


def entry_path(name: str) -> Path | None:
    """The usable file of ``name`` on this machine (the converted checkpoint in the user cache,
    or the packaged file), or None when it is missing."""
    entry = _entry(name)
    if entry.kind == "packaged":
        path = _packaged_path()
    else:
        from .weights import user_weights_dir

        path = user_weights_dir() / entry.checkpoint_name
    return path if path.is_file() else None


def entry_status(name: str) -> Status:
    """``"available"`` when :func:`entry_path` finds the file, else ``"missing"``."""
    return "available" if entry_path(name) is not None else "missing"


# --------------------------------------------------------------------------- download


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    # imported here, so that the command line's --help does not pay for http and email
    import http.client
    import urllib.error

    dest = Path(dest).expanduser()
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
    _check_cancel(cancel, part)

    try:
        try:
            response = _open(url, start, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not start:
                raise
            # Range not satisfiable: the partial file may already be complete.
            match = _UNSATISFIABLE_RANGE.search(exc.headers.get("Content-Range", "") or "")
            exc.close()
            if match and int(match.group(1)) == start:
                response = None
            else:
                part.unlink()
                start = 0
                response = _open(url, 0, timeout)
        total: int | None
        if response is None:
            total = done = start
            if progress is not None:
                progress(done, total)
        else:
            with response:
                status = getattr(response, "status", None) or response.getcode()
                header = (response.headers.get("Content-Length") or "").strip()
                length = int(header) if header.isdigit() else None
                content_range = _CONTENT_RANGE.search(
                    response.headers.get("Content-Range", "") or ""
                )
                if status == 206 and content_range is not None:
                    first, last, whole = content_range.groups()
                    if int(first) != start:
                        part.unlink(missing_ok=True)
                        raise DownloadError(
                            f"{url} sent bytes from {first} when {start} were asked for; the "
                            "partial file was removed, download again to start over"
                        )
                    total = int(whole) if whole != "*" else int(last) + 1
                elif status == 206 and start:  # no Content-Range: trust that it honoured the Range
                    total = start + length if length is not None else None
                else:  # a fresh download, or a server that ignored the Range request: start over
                    start = 0
                    total = length
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
            if total is not None and done < total:
                raise DownloadError(
                    f"the transfer from {url} was cut short after {done} of {total} bytes; the "
                    f"bytes received are kept in {part} and the next download resumes from there"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # URLError and HTTPError are OSErrors too; timeouts and refused connections as well.
        where = (
            f"; the {part.stat().st_size} bytes received are kept in {part} for resuming"
            if part.is_file() and part.stat().st_size
            else ""
        )
        raise DownloadError(f"could not download {url}: {_reason(exc)}{where}") from exc

    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(
            f"the download from {url} has {got} bytes but {size} were expected; the size (and so "
            "the checksum) did not match, and the file was removed"
        )
    if sha256 is not None:
        digest = _sha256(part)
        if digest.lower() != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"the SHA-256 checksum did not match for the download from {url} (expected "
                f"{sha256}, got {digest}); the file was removed"
            )
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- fetch


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def fetch(
    name: str,
    *,
    progress: Progress | None = None,
    cancel: CancelEvent | None = None,
    overwrite: bool = False,
    urls: Sequence[str] | None = None,
    config: ModelConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Make the weights ``name`` available on this machine and return the file to load.

    For a ``keras-h5`` entry: when its converted checkpoint is already in the user cache and
    ``overwrite`` is False, that file is returned without downloading. Otherwise each URL is
    tried in turn (a failure moves on to the next), the file is downloaded into the user cache
    (resuming an interrupted download), checked, and converted with
    :func:`~napari_chromagan.keras_import.import_keras_weights_to_checkpoint`; the downloaded
    ``.h5`` is then removed, because the checkpoint holds the same weights. If the conversion
    fails, the ``.h5`` is kept (the error says where), so that the conversion can be retried with
    ``napari-chromagan import-weights`` or the file reported without downloading it again. For
    the packaged entry, the file shipped with the package is returned.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`.
    progress, cancel
        As :func:`download`.
    overwrite : bool
        Download and convert again even when the checkpoint exists (and replace it).
    urls : sequence of str, optional
        Addresses to try instead of the entry's own (for tests and mirrors).
    config : ModelConfig, optional
        The architecture the Keras file must match (the paper's by default; small ones exist
        for tests).
    log : callable, optional
        Receives one-line messages about what is happening (which URL, failures, converting).

    Raises
    ------
    ValueError
        ``name`` is not in the registry.
    WeightsNotFoundError
        The packaged model is missing from this installation.
    DownloadError
        Every URL failed; the message lists each URL's error and the manual steps.
    CheckpointError
        The downloaded file is not the expected model (it is kept, and the message says where).
    ImportError
        h5py is missing (checked before anything is downloaded).
    Cancelled
        ``cancel`` was set; a partial download is kept for resuming.
    """
    entry = _entry(name)
    say = log if log is not None else (lambda message: None)
    if entry.kind == "packaged":
        path = _packaged_path()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"this installation lacks the default model {path}. {entry.manual_steps}"
            )
        return path

    from .weights import user_weights_dir

    folder = user_weights_dir()
    target = folder / entry.checkpoint_name
    if target.is_file() and not overwrite:
        say(f"{entry.name} is already available: {target}")
        return target
    if entry.kind == "keras-h5":
        from .keras_h5 import require_h5py

        require_h5py()  # fail before a long download, not after it

    candidates = tuple(urls) if urls is not None else entry.urls
    if not candidates:
        raise DownloadError(f"{entry.name} has no download address. {entry.manual_steps}")
    raw = folder / (entry.filename if entry.kind == "keras-h5" else entry.checkpoint_name)
    failures: list[str] = []
    downloaded: Path | None = None
    for url in candidates:
        say(f"downloading {entry.name} from {url}")
        try:
            downloaded = download(
                url,
                raw,
                sha256=entry.sha256,
                size=entry.size,
                progress=progress,
                cancel=cancel,
                overwrite=True,
            )
        except DownloadError as exc:
            failures.append(str(exc))  # it names the address
            say(f"failed: {exc}")
            continue
        if entry.kind == "keras-h5" and not _is_hdf5(downloaded):
            # An error page served with status 200, a captive portal...: try the next address.
            downloaded.unlink()
            failures.append(f"{url} sent a file that is not HDF5 (an error page?); it was removed")
            say(failures[-1])
            downloaded = None
            continue
        break
    if downloaded is None:
        listed = "\n".join(f"  {line}" for line in failures)
        raise DownloadError(
            f"could not download {entry.name} from any of its {len(candidates)} "
            f"address{'es' if len(candidates) != 1 else ''}:\n{listed}\n{entry.manual_steps}"
        )
    if entry.kind == "checkpoint":
        return downloaded

    from .keras_import import import_keras_weights_to_checkpoint

    say(f"converting {downloaded} into {target}")
    try:
        converted = import_keras_weights_to_checkpoint(
            downloaded, target, overwrite=True, config=config
        )
    except (CheckpointError, OSError) as exc:
        # Keep the download (about 0.5 GB): the conversion can be retried, or the file reported.
        raise type(exc)(
            f"{exc}\nThe downloaded file is kept at {downloaded}: retry the conversion with "
            f"`napari-chromagan import-weights {downloaded}`, or report the problem with that file"
        ) from None
    downloaded.unlink(missing_ok=True)  # the checkpoint holds the same weights
    return converted
