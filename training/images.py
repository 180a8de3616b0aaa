"""Image files for training and evaluation: finding them (a folder, a list file or one image),
holding some out for validation, and decoding one into 8-bit RGB or gray.

A file's pixels are mapped as the plugin maps them (16-bit and float to 8 bits, alpha composited on
white, the first page of a stack), and an RGB file whose channels (nearly) agree counts as gray.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from napari_chromagan.engine.normalize import resolve_normalization
from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files.imageio import IMAGE_SUFFIXES, image_files_in, read_image

from .metrics import SSIM_MIN_SIZE

__all__ = [
    "GRAY_TOLERANCE",
    "decode_image",
    "find_images",
    "is_gray",
    "load_colour_image",
    "split_validation",
]

log = logging.getLogger("training.evaluate")  # load_colour_image's warnings, as before the split

GRAY_TOLERANCE = 2  # an RGB image whose channels differ by at most this much (8-bit) is gray
_LIST_CHECK = 100  # a list file is refused when none of its first entries exists


# --------------------------------------------------------------------------------------------
# Finding the images


def find_images(source: str | os.PathLike[str]) -> list[Path]:
    """List the training images of a folder or a list file.

    Parameters
    ----------
    source : str or path-like
        A folder, searched as :func:`napari_chromagan.files.imageio.image_files_in` does (recursively,
        the plugin's image suffixes, hidden files and folders skipped, sorted); or a text file
        listing image paths, one per line (relative paths are taken relative to the list file's
        folder; blank lines and lines starting with ``#`` are ignored; entries are kept as
        listed, in order, without checking their suffix); or a single image file.

    Returns
    -------
    list of Path

    Raises
    ------
    FileNotFoundError
        If `source` does not exist, or none of the first 100 entries of a list file exists.
    ValueError
        If no image was found, or the list file is not text.
    """
    path = Path(source)
    if path.is_dir():
        found = image_files_in(path)
        if not found:
            accepted = " ".join(sorted(IMAGE_SUFFIXES))
            raise ValueError(
                f"no images found in {path} (searched recursively, hidden files and folders "
                f"skipped; accepted suffixes: {accepted}); point to the folder that holds the "
                "images, or pass a text file listing them one per line"
            )
        return found
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such folder or file; pass a folder of images or a text file listing "
            "image paths one per line"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return _read_list(path)


def _read_list(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{list_file} is neither a folder, an image ({' '.join(sorted(IMAGE_SUFFIXES))}) nor a UTF-8 "
            "text file listing image paths one per line"
        ) from exc
    base = list_file.parent
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            paths.append(base / entry)  # an absolute entry stays absolute
    if not paths:
        raise ValueError(
            f"{list_file} lists no images; write one image path per line (relative paths are "
            f"taken relative to {base}; blank lines and '#' comments are ignored)"
        )
    # Checking every entry would stat a million files on a network disk; a list whose first
    # entries are all missing is almost surely relative to the wrong folder.
    if not any(p.exists() for p in paths[:_LIST_CHECK]):
        raise FileNotFoundError(
            f"{list_file}: none of its first {min(len(paths), _LIST_CHECK)} entries exists "
            f"(first: {paths[0]}); relative paths are taken relative to the list file's folder "
            f"{base}"
        )
    return paths


def split_validation(
    paths: list[Path], fraction: float, root: str | os.PathLike[str]
) -> tuple[list[Path], list[Path]]:
    """(training, held out): ``round(fraction * len(paths))`` files (at least one) held out.

    The held-out files are those whose path relative to ``root`` has the smallest SHA-1, so the
    split depends on the files alone (not on ``--seed`` or their order), and adding images to a
    folder moves few files from one side to the other. Both lists keep the input order.
    """
    root = Path(root)
    root = root if root.is_dir() else root.parent

    def key(path: Path) -> str:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        return hashlib.sha1(name.encode("utf-8")).hexdigest()

    count = min(len(paths), max(1, round(fraction * len(paths))))
    held = set(sorted(range(len(paths)), key=lambda i: key(paths[i]))[:count])
    return [p for i, p in enumerate(paths) if i not in held], [
        p for i, p in enumerate(paths) if i in held
    ]


# --------------------------------------------------------------------------------------------
# Decoding one image


def _to_uint8(array: np.ndarray, rgb: bool) -> np.ndarray:
    """Any dtype -> uint8, as the plugin maps intensities (``normalize`` ``"auto"``)."""
    if array.dtype == np.uint8:
        return array
    norm = resolve_normalization(array, "auto", rgb=rgb, leading_ndim=0)
    unit = np.nan_to_num(norm.apply(array), nan=0.0)
    return (unit * 255.0 + 0.5).astype(np.uint8)


def _unit_alpha(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype.kind in "ui":
        return alpha.astype(np.float32) / float(np.iinfo(alpha.dtype).max)
    return np.clip(np.nan_to_num(alpha.astype(np.float32), nan=1.0), 0.0, 1.0)


def decode_image(path: Path) -> tuple[np.ndarray, bool]:
    """Read ``path`` -> (uint8 (H, W) if gray else (H, W, 3), is_gray).

    EXIF orientation is applied, palettes expanded (``read_image``); the first page of a stack
    is used; alpha is composited on white; 16-bit and float data are mapped to 8 bits.
    """
    array = read_image(path)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] > 4:
        array = np.moveaxis(array, 0, -1)  # planar (channels-first) TIFF
    while array.ndim > 3 or (array.ndim == 3 and array.shape[-1] > 4):
        array = array[0]  # first page / plane of a stack
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 and array.ndim != 3:
        raise ValueError(f"unexpected pixel array shape {array.shape}")
    alpha = None
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array, alpha = array[..., :-1], array[..., -1]
        if array.shape[-1] == 1:
            array = array[..., 0]
    image = _to_uint8(array, rgb=array.ndim == 3)
    if alpha is not None:
        a = _unit_alpha(alpha)
        if a.ndim < image.ndim:
            a = a[..., None]
        image = (image * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    if image.ndim == 2:
        return image, True
    if is_gray(image):
        gray = (image.sum(axis=-1, dtype=np.uint16) + 1) // 3
        return gray.astype(np.uint8), True
    return np.ascontiguousarray(image), False


def is_gray(rgb: np.ndarray) -> bool:
    """Whether an 8-bit RGB image (H, W, 3) is gray: its channels differ by at most
    `GRAY_TOLERANCE` at every pixel. Training and evaluation both skip (or keep) such files."""
    # Most colour photos are told apart on a sparse sample; only candidates get the full check.
    return (
        _channel_spread(rgb[::8, ::8]) <= GRAY_TOLERANCE and _channel_spread(rgb) <= GRAY_TOLERANCE
    )


def _channel_spread(rgb: np.ndarray) -> int:
    return int((rgb.max(axis=-1) - rgb.min(axis=-1)).max(initial=0))


def load_colour_image(path: Path) -> tuple[np.ndarray | None, str]:
    """Read ``path`` as uint8 (H, W, 3); returns (rgb, "") or (None, "gray" | "unreadable").

    Gray files (see the module docstring), unreadable ones and those too small for SSIM are
    refused with the reason (logged for the unreadable ones); training's validation uses it too.
    """
    try:
        image = read_image(path)
    except (UnsupportedImageError, OSError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None, "unreadable"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 2)):
        return None, "gray"
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        log.warning("skipping %s: not a single RGB image (array of shape %s)", path, image.shape)
        return None, "unreadable"
    rgb = image[..., :3]
    if rgb.dtype == np.uint16:
        rgb = np.round(rgb / 257.0).astype(np.uint8)
    elif rgb.dtype != np.uint8:
        log.warning("skipping %s: expected 8- or 16-bit RGB, got %s", path, rgb.dtype)
        return None, "unreadable"
    if is_gray(rgb):  # the training data's definition of a gray file
        return None, "gray"
    if min(rgb.shape[:2]) < SSIM_MIN_SIZE:
        log.warning(
            "skipping %s: %dx%d is too small to score (SSIM needs %d pixels a side)",
            path, rgb.shape[1], rgb.shape[0], SSIM_MIN_SIZE,
        )  # fmt: skip
        return None, "unreadable"
    return np.ascontiguousarray(rgb), ""
