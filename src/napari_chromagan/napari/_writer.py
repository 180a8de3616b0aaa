"""The plugin's napari writer: save a colourised layer with its provenance record.

napari's own image writer (napari builtins) saves pixels only, so a colourised layer saved with it
loses the record of how it was made. This writer, offered in File -> Save Selected Layers as
"ChromaGAN colorization colourised image with provenance" (and used by
``viewer.layers.save(path, plugin="napari-chromagan")``), writes the layer's pixels through
:func:`napari_chromagan.files.imageio.write_image` with the layer's record
(:meth:`LayerResult.file_provenance`: the colourisation, plus any Chroma blend applied since) in
the format's own metadata. Layers that carry no record are written without one.

No Qt and no napari import: napari calls ``write_colorized_image(path, data, meta)``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files.imageio import write_image
from napari_chromagan.napari.layer_result import get_layer_result, is_colorized

__all__ = ["write_colorized_image"]

_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


def write_colorized_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one napari Image layer (uint8 RGB) to ``path``, with its provenance record.

    Parameters
    ----------
    path : str
        Target file, ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg`` or ``.webp``. napari's save
        dialog has already asked before replacing an existing file, so an existing file is
        replaced, atomically.
    data : array
        The layer's data: uint8 ``(..., H, W, 3)``; a stack only as TIFF.
    meta : dict
        The layer's attributes as napari passes them (``metadata``, ``name``, ``rgb``...).

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    UnsupportedImageError
        For a layer that is not uint8 RGB (save it with napari's own writer instead), a
        multiscale layer, or a stack saved as anything but TIFF.
    """
    target = Path(path)
    name = meta.get("name", "the layer")
    if target.suffix.lower() not in _SUFFIXES:
        raise UnsupportedImageError(
            f"napari-chromagan saves colourised layers as {', '.join(_SUFFIXES)}, not {target.suffix or 'no suffix'}; "
            "pick one of those, or napari's own writer"
        )
    if meta.get("multiscale"):
        raise UnsupportedImageError(
            f"layer {name!r} is multiscale; napari-chromagan saves single-resolution colourised layers"
        )
    array = np.asarray(data)
    if not meta.get("rgb") or array.dtype != np.uint8 or array.shape[-1:] != (3,):
        raise UnsupportedImageError(
            f"layer {name!r} is not a uint8 RGB image ({array.dtype} {array.shape}): napari-chromagan's "
            "writer saves colourised layers; save this one with napari's own writer (napari builtins)"
        )
    metadata = meta.get("metadata") or {}
    holder = SimpleNamespace(metadata=metadata, name=name)
    record = get_layer_result(holder).file_provenance() if is_colorized(holder) else None
    stack = int(np.prod(array.shape[:-3])) if array.ndim > 3 else 1
    if stack > 1 and target.suffix.lower() not in (".tif", ".tiff"):
        raise UnsupportedImageError(
            f"layer {name!r} is a stack of {stack} images, which {target.suffix} cannot hold; save it as .tif"
        )
    write_image(target, array, overwrite=True, provenance=record)
    return [str(target)]
