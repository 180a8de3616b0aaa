"""Where weights are found: an explicit path, ``$NAPARI_CHROMAGAN_WEIGHTS``, the user cache, the small default model.

The user cache is ``platformdirs.user_cache_dir("napari-chromagan")/weights`` (for instance
``~/.cache/napari-chromagan/weights`` on Linux), or ``$NAPARI_CHROMAGAN_CACHE/weights`` when
that variable is set. Imported or downloaded weights land there, so the plugin and the command
line list them.

Last comes the small default model shipped inside the package (``_weights/``), so that the plugin
and the command line work out of the box. It is a width-reduced generator trained briefly on a
few thousand photographs (see the README for its measured figures): far weaker than the authors'
ImageNet model, and labelled as such in its metadata.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_chromagan.errors import WeightsNotFoundError

__all__ = [
    "CACHE_ENV",
    "PACKAGED_WEIGHTS",
    "PREFERRED_CACHE_NAMES",
    "WEIGHTS_ENV",
    "WEIGHTS_SUFFIXES",
    "cached_weights",
    "default_weights_note",
    "folder_hint",
    "packaged_weights",
    "resolve_weights",
    "user_weights_dir",
]

WEIGHTS_ENV = "NAPARI_CHROMAGAN_WEIGHTS"
CACHE_ENV = "NAPARI_CHROMAGAN_CACHE"
WEIGHTS_SUFFIXES = (".pt", ".pth")
# The imported authors' ImageNet model is the best weights a user can have; prefer it.
PREFERRED_CACHE_NAMES = ("chromagan-imagenet.pt",)
# The small default model shipped with the package (trained with `python -m training`; see README).
PACKAGED_WEIGHTS = Path(__file__).parents[1] / "_weights" / "chromagan-lite0.pt"

HOW_TO_GET_WEIGHTS = (
    "To get weights, either import the authors' published ImageNet model "
    "(`napari-chromagan download-weights chromagan-imagenet`, or by hand "
    "`napari-chromagan import-weights my_model_colorization.h5`), or train your own "
    "(`python -m training train --data DIR --out DIR`, then `python -m training export`). Then pass "
    f"the file with --weights, set ${WEIGHTS_ENV}, or put it in {{cache}}."
)


def folder_hint(folder: Path) -> str:
    """What to pass instead of ``folder`` where a weights file is expected (the files inside it)."""
    try:
        inside = sorted(
            p.name for p in folder.iterdir() if p.suffix in WEIGHTS_SUFFIXES and p.is_file()
        )
    except OSError:
        inside = []
    if not inside:
        return "give the path of a .pt checkpoint file"
    shown = ", ".join(inside[:3]) + (" ..." if len(inside) > 3 else "")
    return f"give the path of a .pt checkpoint file inside it ({shown})"


def user_weights_dir() -> Path:
    """The folder where imported and downloaded weights are cached (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "weights"
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-chromagan", appauthor=False)) / "weights"


def cached_weights() -> list[Path]:
    """Weights files in the user cache: preferred names first, then newest first."""
    folder = user_weights_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHTS_SUFFIXES]
    rank = {name: i for i, name in enumerate(PREFERRED_CACHE_NAMES)}
    return sorted(files, key=lambda p: (rank.get(p.name, len(rank)), -p.stat().st_mtime_ns, p.name))


def packaged_weights() -> Path | None:
    """The small default model shipped inside the package, when this installation has it."""
    return PACKAGED_WEIGHTS if PACKAGED_WEIGHTS.is_file() else None


def default_weights_note(path: str | os.PathLike[str] | None) -> str | None:
    """One line for users of the small default weights: the paper's model is the authors' one.

    None for any other weights file.
    """
    if path is None or PACKAGED_WEIGHTS.name != Path(path).name:
        return None
    try:
        if not Path(path).samefile(PACKAGED_WEIGHTS):
            return None
    except OSError:
        return None
    return (
        "these are the small default weights shipped with napari-chromagan; the paper's model is "
        "the authors' ImageNet generator: napari-chromagan download-weights chromagan-imagenet"
    )


def resolve_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file to use.

    Order: ``path`` when given (it must exist), then ``$NAPARI_CHROMAGAN_WEIGHTS``, then the
    user cache folder (:func:`user_weights_dir`), then the small default model shipped with the
    package (:func:`packaged_weights`).

    Raises
    ------
    WeightsNotFoundError
        With the steps to get weights.
    """
    how = HOW_TO_GET_WEIGHTS.format(cache=user_weights_dir())
    if path is not None:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            raise WeightsNotFoundError(
                f"{candidate} is a folder, not a weights file; {folder_hint(candidate)}"
            )
        if not candidate.is_file():
            raise WeightsNotFoundError(f"weights file {candidate} does not exist. {how}")
        return candidate
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        candidate = Path(env).expanduser()
        if candidate.is_dir():
            raise WeightsNotFoundError(
                f"${WEIGHTS_ENV} points to {candidate}, a folder, not a weights file; {folder_hint(candidate)}"
            )
        if not candidate.is_file():
            raise WeightsNotFoundError(
                f"${WEIGHTS_ENV} points to {candidate}, which does not exist. {how}"
            )
        return candidate
    found = cached_weights()
    if found:
        return found[0]
    demo = packaged_weights()
    if demo is not None:
        return demo
    raise WeightsNotFoundError(f"no ChromaGAN weights found. {how}")
