"""Image files in and out for the ``napari-chromagan colorize`` command line.

Pillow reads PNG, JPEG, WebP and BMP; tifffile reads and writes TIFF, including multi-page
stacks and 16-bit or floating-point data. Outputs are written atomically: into a hidden
temporary file next to the target, flushed to disk, then renamed over the final name, so an
interrupted run never leaves a half-written image behind. The outputs' names come from
:mod:`napari_chromagan.files.output_names` (re-exported here).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import Image, ImageOps

from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files.atomic import atomic_write
from napari_chromagan.files.output_names import output_path, output_paths
from napari_chromagan.files.provenance import TIFF_MAGIC, save_options

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "collect_inputs",
    "image_files_in",
    "output_path",
    "output_paths",
    "read_image",
    "write_image",
]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
)

_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_READ_HINT = "expected a complete PNG, JPEG, TIFF, WebP or BMP file"
# Pillow's own refusal threshold (twice Image.MAX_IMAGE_PIXELS): a file that unpacks into more
# pixels than this is refused as a possible decompression bomb unless the caller raises the limit.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
_pil_limit_lock = threading.Lock()


def collect_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand command-line arguments into the list of image files to process.

    Parameters
    ----------
    paths : sequence of str or path-like
        Files (taken as given, whatever their suffix) and folders (searched recursively for
        files with a suffix in `IMAGE_SUFFIXES`, case-insensitively, in sorted order, skipping
        hidden files and folders).

    Returns
    -------
    list of Path
        The files, in argument order, each only once (the first occurrence is kept).

    Raises
    ------
    FileNotFoundError
        If an argument does not exist, or if no image was found at all.
    """
    found: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found.extend(image_files_in(path))
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    seen: set[str] = set()
    unique = []
    for path in found:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            unique.append(path)
    if not unique:
        where = ", ".join(str(Path(p)) for p in paths) or "(no paths given)"
        accepted = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FileNotFoundError(f"no images found in {where}; accepted: {accepted}")
    return unique


def image_files_in(folder: Path) -> list[Path]:
    """The image files below ``folder``: recursively, a suffix in `IMAGE_SUFFIXES` (any case),
    hidden files and folders skipped, sorted by their path relative to ``folder``.

    The one folder search of the package: the command line, the widgets and the training data
    all list images this way.
    """
    hits = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            # the suffix test first: a folder of a million files builds no Path for the others
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath, name)
            if path.is_file():
                hits.append(path)
    return sorted(hits, key=lambda p: p.relative_to(folder).parts)


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file into a numpy array.

    Parameters
    ----------
    path : str or path-like
        A TIFF file (recognised by its content, read with tifffile) or any image Pillow reads.
    max_pixels : int or None
        Refuse a PNG, JPEG, WebP or BMP image of more pixels than this (width x height), before
        decoding it: the guard against decompression bombs, small files that unpack into huge
        images. None (or 0) for no limit, for genuine huge scans. TIFF files are not limited.

    Returns
    -------
    numpy.ndarray
        TIFF: the full stored array, any dtype (multi-page -> ``(pages, H, W[, 3])``; 1-bit
        images as uint8 0/255, as for the other formats).
        Otherwise, after applying the EXIF orientation: ``(H, W)`` for grey images (uint8,
        uint16, int32 or float32; bilevel as uint8 0/255; the alpha of grey+alpha dropped),
        ``(H, W, 3)`` uint8 for RGB and palette images, ``(H, W, 4)`` uint8 for RGBA and
        palette images with transparency.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    UnsupportedImageError
        If the file is empty, truncated, corrupt, not an image, or larger than ``max_pixels``.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise UnsupportedImageError(f"{path}: cannot read image (the file is empty); {_READ_HINT}")
    try:
        array = (
            np.asarray(tifffile.imread(path))
            if head in TIFF_MAGIC
            else _read_pillow(path, max_pixels)
        )
    except UnsupportedImageError:
        raise
    except Exception as exc:  # Pillow and tifffile raise many types for bad files
        reason = str(exc) or type(exc).__name__
        raise UnsupportedImageError(f"{path}: cannot read image ({reason}); {_READ_HINT}") from exc
    if array.size == 0:
        raise UnsupportedImageError(f"{path}: cannot read image (no pixel data); {_READ_HINT}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * np.uint8(255)
    return array


def _open_pillow(path: Path) -> Image.Image:
    """``Image.open`` (the header only) without Pillow's own bomb check, which
    :func:`_read_pillow` replaces by one that says what to do. The check is a process-wide
    setting, so it is switched off under a lock, for the header parse alone."""
    with _pil_limit_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large(path: Path, width: int, height: int, limit: int) -> UnsupportedImageError:
    pixels = width * height
    what = (
        f"{path}: the image is {width} x {height} = {pixels:,} pixels, more than the limit of "
        f"{limit:,} that guards against decompression bombs (small files that unpack into huge "
        "images and exhaust memory)"
    )
    return UnsupportedImageError(
        f"{what}. If it is a genuine large scan, pass max_pixels={pixels} (or None for no limit)",
        cli_message=f"{what}. If it is a genuine large scan, raise the limit with --max-pixels {pixels} "
        "(or --max-pixels 0 for none)",
    )


def _read_pillow(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    limit = max_pixels or None
    with _open_pillow(path) as opened:
        width, height = opened.size
        if limit is not None and width * height > limit:
            raise _too_large(path, width, height, limit)
        img = ImageOps.exif_transpose(opened)  # a loaded copy, turned upright
    if img.mode == "LA":
        img = img.getchannel("L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode not in ("L", "I", "F", "RGB", "RGBA") and not img.mode.startswith("I;16"):
        img = img.convert("RGB")  # CMYK, YCbCr, ...
    array = np.array(img)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        array = array.astype(np.uint16, copy=False)  # big-endian I;16B -> native
    return array


def _pillow_writer(
    path: Path, ext: str, array: np.ndarray, quality: int, provenance: dict[str, Any] | None
) -> Callable[[BinaryIO], None]:
    """What writes one RGB image (a stack of one is unwrapped) to a PNG, JPEG or WebP file."""
    if array.ndim > 3 and all(n == 1 for n in array.shape[:-3]):
        array = array.reshape(array.shape[-3:])
    if array.ndim > 3:
        raise UnsupportedImageError(
            f"{path}: cannot save a stack of {int(np.prod(array.shape[:-3]))} images as "
            f"{ext}; choose TIFF with `--format tiff`"
        )
    options: dict[str, object] = {"format": _PIL_FORMATS[ext]}
    if ext != ".png":
        options["quality"] = quality
    if provenance is not None:
        options.update(save_options(ext, provenance))
    image = Image.fromarray(np.ascontiguousarray(array))

    def write(fh: BinaryIO) -> None:
        image.save(fh, **options)

    return write


def _tiff_writer(
    ext: str, array: np.ndarray, provenance: dict[str, Any] | None
) -> Callable[[BinaryIO], None]:
    """What writes an RGB image or stack (multi-page) to a TIFF file."""
    tiff_options = {} if provenance is None else save_options(ext, provenance)

    def write(fh: BinaryIO) -> None:
        tifffile.imwrite(fh, array, photometric="rgb", compression="zlib", **tiff_options)

    return write


def write_image(
    path: Path,
    rgb: np.ndarray,
    *,
    overwrite: bool = False,
    quality: int = 95,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write an RGB image, or a stack of them, atomically.

    Parameters
    ----------
    path : Path
        Target file; its suffix picks the format (``.png``, ``.jpg``/``.jpeg``, ``.webp``,
        ``.tif``/``.tiff``). Missing parent folders are created.
    rgb : numpy.ndarray
        uint8 ``(H, W, 3)``, or for TIFF a stack ``(..., H, W, 3)`` written as multi-page RGB.
    overwrite : bool
        Replace `path` if it exists.
    quality : int
        JPEG and WebP quality, 1-100.
    provenance : dict, optional
        A record from :mod:`napari_chromagan.files.provenance`, stored in the format's own metadata
        (PNG text, TIFF ImageDescription, JPEG comment, WebP XMP; see there). None: no record.

    Raises
    ------
    FileExistsError
        If `path` exists and `overwrite` is false; nothing is written.
    UnsupportedImageError
        If `rgb` is not uint8 RGB, or is a stack and the format is not TIFF.
    ValueError
        If the suffix of `path` is not a format written here.
    """
    path = Path(path)
    ext = path.suffix.lower()
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim < 3 or array.shape[-1] != 3 or array.size == 0:
        raise UnsupportedImageError(
            f"{path}: expected uint8 RGB data of shape (..., H, W, 3), "
            f"got {array.dtype} {array.shape}"
        )
    if ext in _PIL_FORMATS:
        write = _pillow_writer(path, ext, array, quality, provenance)
    elif ext in (".tif", ".tiff"):
        write = _tiff_writer(ext, array, provenance)
    else:
        what = ext or "files without a suffix"
        raise ValueError(f"{path}: cannot write {what}; use .png, .jpg, .webp or .tif")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
