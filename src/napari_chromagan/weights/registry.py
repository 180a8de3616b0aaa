"""Known weights, where they are published, and a resumable, verified download (no Qt).

:data:`REGISTRY` names the weights the package knows about. ``chromagan-imagenet`` is the
authors' ImageNet generator, published as a Keras file (docs/model.md, "The authors' Keras weights");
:func:`fetch` downloads it into the user cache (:func:`~napari_chromagan.weights.lookup.user_weights_dir`)
and converts it into ``chromagan-imagenet.pt`` there, where the plugin and the command line look
first. ``chromagan-lite0`` is the small default model shipped inside the package.

The transfer itself (resumable, with its size and checksum checks) is
:func:`~napari_chromagan.weights.download.download`, re-exported here with :class:`DownloadError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from napari_chromagan.errors import CheckpointError, WeightsNotFoundError
from napari_chromagan.progress import CancelEvent
from napari_chromagan.weights.download import DownloadError, Progress, download

if TYPE_CHECKING:
    from napari_chromagan.model.generator import ModelConfig

__all__ = [
    "REGISTRY",
    "DownloadError",
    "WeightsEntry",
    "download",
    "entry_path",
    "entry_status",
    "fetch",
]

Status = Literal["available", "missing"]


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
                "trained at 224 px on a CPU, run at 256; far weaker than chromagan-imagenet)"
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


def _entry(name: str) -> WeightsEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ValueError(f"unknown weights {name!r}; known weights: {known}") from None


def _packaged_path() -> Path:
    from napari_chromagan.weights import (
        lookup as weights,  # read at call time: tests redirect weights.PACKAGED_WEIGHTS
    )

    return weights.PACKAGED_WEIGHTS


def entry_path(name: str) -> Path | None:
    """The usable file of ``name`` on this machine (the converted checkpoint in the user cache,
    or the packaged file), or None when it is missing."""
    entry = _entry(name)
    if entry.kind == "packaged":
        path = _packaged_path()
    else:
        from napari_chromagan.weights.lookup import user_weights_dir

        path = user_weights_dir() / entry.checkpoint_name
    return path if path.is_file() else None


def entry_status(name: str) -> Status:
    """``"available"`` when :func:`entry_path` finds the file, else ``"missing"``."""
    return "available" if entry_path(name) is not None else "missing"


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
    :func:`~napari_chromagan.weights.keras_import.import_keras_weights_to_checkpoint`; the downloaded
    ``.h5`` is then removed, because the checkpoint holds the same weights (when the conversion
    fails it is kept, and the error says where). For the packaged entry, the file shipped with
    the package is returned.

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
        return _packaged_file(entry)
    from napari_chromagan.weights.lookup import user_weights_dir

    target = user_weights_dir() / entry.checkpoint_name
    if target.is_file() and not overwrite:
        say(f"{entry.name} is already available: {target}")
        return target
    downloaded = _download_any(entry, urls, target.parent, progress, cancel, say)
    return downloaded if entry.kind == "checkpoint" else _convert(downloaded, target, config, say)


def _packaged_file(entry: WeightsEntry) -> Path:
    """The file shipped with the package, which no download can replace."""
    path = _packaged_path()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"this installation lacks the default model {path}. {entry.manual_steps}"
        )
    return path


def _download_any(
    entry: WeightsEntry,
    urls: Sequence[str] | None,
    folder: Path,
    progress: Progress | None,
    cancel: CancelEvent | None,
    say: Callable[[str], None],
) -> Path:
    """Download ``entry`` into ``folder`` (the user cache) from the first of its addresses (or
    ``urls``) that sends the whole file, checked; a failure moves on to the next address."""
    if entry.kind == "keras-h5":
        from napari_chromagan.weights.keras_h5 import require_h5py

        require_h5py()  # fail before a long download, not after it

    candidates = tuple(urls) if urls is not None else entry.urls
    if not candidates:
        raise DownloadError(f"{entry.name} has no download address. {entry.manual_steps}")
    raw = folder / (entry.filename if entry.kind == "keras-h5" else entry.checkpoint_name)
    failures: list[str] = []
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
            continue
        return downloaded
    listed = "\n".join(f"  {line}" for line in failures)
    raise DownloadError(
        f"could not download {entry.name} from any of its {len(candidates)} "
        f"address{'es' if len(candidates) != 1 else ''}:\n{listed}\n{entry.manual_steps}"
    )


def _convert(
    downloaded: Path, target: Path, config: ModelConfig | None, say: Callable[[str], None]
) -> Path:
    """Convert the downloaded Keras file into the checkpoint ``target``, then remove it (the
    checkpoint holds the same weights). If the conversion fails, the ``.h5`` is kept (the error
    says where), so that the conversion can be retried with ``napari-chromagan import-weights``
    or the file reported without downloading it again."""
    from napari_chromagan.weights.keras_import import import_keras_weights_to_checkpoint

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
