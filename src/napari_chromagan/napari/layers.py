"""Colourise a napari Image layer: the scripted API behind the Colorize widget.

The work is split so that the slow part never touches napari:

1. :func:`prepare_request` (main thread) reads what is needed from the source layer: its data
   (the highest-resolution level of a multiscale layer, or one plane of a stack), whether it is
   RGB, and the transforms the output layer must carry (:mod:`.layer_transforms`).
2. :func:`iter_run_request` (any thread; what the widget's ``thread_worker`` runs) loads the
   weights (cached: :mod:`.colorizer_cache`) and runs the engine's generator under the
   out-of-memory policy (:mod:`.memory`), yielding its progress events; :func:`run_request` is
   its callback form.
3. :func:`add_or_update_layer` (main thread) makes the output layer, or updates the one an
   earlier run made from the same source.

:func:`colorize_layer` chains the three. The source layer is only ever read.

napari is imported inside the functions that need it; Qt is never imported here.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_chromagan.engine.memory import (
    MemoryFallbackWarning,
    is_out_of_memory,
    iter_with_fallback,
    run_with_fallback,
)
from napari_chromagan.napari.colorizer_cache import (
    clear_colorizer_cache,
    colorizer_factory,
    load_colorizer,
)
from napari_chromagan.napari.layer_result import (
    METADATA_KEY,
    LayerResult,
    is_colorized,
    result_metadata,
)
from napari_chromagan.napari.layer_transforms import transform_kwargs
from napari_chromagan.progress import CancelEvent, Progress, run_events

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_chromagan.engine.colorize import Colorizer
    from napari_chromagan.engine.result import ColorizeResult

__all__ = [
    "ColorizeOutput",
    "ColorizeRequest",
    "MemoryFallbackWarning",
    "Progress",
    "add_or_update_layer",
    "clear_colorizer_cache",
    "colorize_layer",
    "is_out_of_memory",
    "iter_run_request",
    "load_colorizer",
    "output_name",
    "prepare_request",
    "run_request",
    "run_with_fallback",
]


# --------------------------------------------------------------------------- the request


@dataclass
class ColorizeRequest:
    """What a run needs from the source layer, read on the main thread.

    Attributes
    ----------
    source : str
        The source layer's name.
    image : array
        numpy or dask: the (level 0, or one plane of the) source data, never copied.
    rgb : bool
        Whether ``image``'s last axis is colour.
    plane : tuple of int or None
        The plane's index on the source's leading axes ("current plane" runs).
    layer_kwargs : dict
        Transforms, axis labels and units for the output Image layer.
    """

    source: str
    image: Any
    rgb: bool
    plane: tuple[int, ...] | None
    layer_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def planes(self) -> int:
        """How many planes the engine will colourise."""
        shape = self.image.shape[:-1] if self.rgb else self.image.shape
        return math.prod(shape[:-2])


@dataclass
class ColorizeOutput:
    """A finished run: the engine's result plus what the output layer records."""

    result: ColorizeResult
    class_head_trained: bool | None
    seconds: float = 0.0
    # what made it (napari_chromagan.files.provenance): kept in the layer, written into saved files
    provenance: dict[str, Any] | None = None


def output_name(source_name: str) -> str:
    """The name of the layer colourised from the layer named ``source_name``."""
    return f"{source_name} colorized"


def _check_layer(layer: Any) -> None:
    from napari.layers import Image

    if not isinstance(layer, Image):
        kind = type(layer).__name__
        name = getattr(layer, "name", None)
        raise TypeError(
            f"colorize_layer needs a napari Image layer, got a {kind} layer"
            + (f" ({name!r})" if name else "")
            + ". Pick an image layer, or add the array with viewer.add_image."
        )


def prepare_request(layer: Any, plane: tuple[int, ...] | None = None) -> ColorizeRequest:
    """Read what a run needs from ``layer`` (a napari Image layer); call on the main thread.

    ``plane``: the index on the layer's leading (non-spatial) axes of the one plane to colourise;
    None (or ``()`` for a 2D layer) colourises the whole layer. A multiscale layer is colourised
    at its highest resolution, with a warning.

    Raises
    ------
    TypeError
        ``layer`` is not an Image layer.
    ValueError
        ``plane`` does not fit the layer's leading axes.
    """
    _check_layer(layer)
    data = layer.data
    if layer.multiscale:
        data = data[0]
        warnings.warn(
            f"layer {layer.name!r} is multiscale: colourising its highest-resolution level "
            f"(shape {tuple(data.shape)})",
            UserWarning,
            stacklevel=2,
        )
    rgb = bool(layer.rgb)
    leading = tuple(data.shape[: layer.ndim - 2])
    if plane is not None:
        plane = tuple(int(i) for i in plane)
        if len(plane) != len(leading):
            raise ValueError(
                f"plane {plane} does not fit layer {layer.name!r}: it has {len(leading)} leading "
                f"axes of shape {leading}; give one index per leading axis"
            )
        if any(not 0 <= i < n for i, n in zip(plane, leading, strict=True)):
            raise ValueError(
                f"plane {plane} is outside layer {layer.name!r}'s leading shape {leading}"
            )
        if not plane:
            plane = None
    image = data if plane is None else data[plane]
    return ColorizeRequest(
        source=layer.name,
        image=image,
        rgb=rgb,
        plane=plane,
        layer_kwargs=transform_kwargs(layer, plane),
    )


def iter_run_request(
    request: ColorizeRequest,
    weights: Any = None,
    device: str = "auto",
    *,
    batch_size: int = 8,
    normalization: str = "auto",
    percentiles: tuple[float, float] = (0.5, 99.5),
    value_range: tuple[float, float] | None = None,
    with_class: bool = True,
    network_size: int | None = None,
    cancel: threading.Event | None = None,
    warn: Callable[[str], None] | None = None,
) -> Generator[Progress | str, None, ColorizeOutput]:
    """Colourise a prepared request (any thread; touches no napari object), as a generator.

    What the widget's ``thread_worker`` runs. Yields the engine's
    :class:`~napari_chromagan.progress.Progress` events and, without ``warn``, a ``str`` for
    each out-of-memory report; returns the :class:`ColorizeOutput` (``yield from`` gives it).
    Setting ``cancel`` stops the engine before its next batch (:class:`Cancelled`); closing the
    generator early stops it at once and sets ``cancel``. ``weights``: a path, None (the
    default weights) or a :class:`Colorizer`; ``network_size`` as for :class:`Colorizer`.
    """
    start = time.perf_counter()
    colorizer_for, device = colorizer_factory(weights, device, network_size)
    events = iter_with_fallback(
        colorizer_for,
        request.image,
        device,
        batch_size=batch_size,
        warn=warn,
        normalization=normalization,
        percentiles=tuple(percentiles),
        value_range=None if value_range is None else tuple(value_range),
        rgb=request.rgb,
        with_class=with_class,
        cancel=cancel,
    )
    try:
        result, colorizer = yield from events
    except GeneratorExit:
        if cancel is not None:
            cancel.set()  # closing the generator is a cancel: say so to whoever shares the event
        raise
    from napari_chromagan.files.provenance import record_for

    record = record_for(colorizer, result)  # the colourizer that finished, after any CPU fallback
    return ColorizeOutput(result, colorizer.class_head_trained, time.perf_counter() - start, record)


def run_request(
    request: ColorizeRequest,
    weights: Any = None,
    device: str = "auto",
    *,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> ColorizeOutput:
    """The callback form of :func:`iter_run_request`: ``progress(done, total)`` in planes.

    Out-of-memory reports go to ``warn``, by default ``warnings.warn(..., MemoryFallbackWarning)``.
    """
    events = iter_run_request(request, weights, device, warn=warn, **kwargs)
    return run_events(events, progress, on_event=_memory_warning)


def _memory_warning(message: str) -> None:
    warnings.warn(message, MemoryFallbackWarning, stacklevel=4)


# --------------------------------------------------------------------------- the output layer


def _layer_content(
    request: ColorizeRequest, output: ColorizeOutput
) -> tuple[np.ndarray, dict[str, Any]]:
    result = LayerResult.from_colorize_result(
        output.result,
        source=request.source,
        class_head_trained=output.class_head_trained,
        plane=request.plane,
        provenance=output.provenance,
    )
    return output.result.rgb, {
        "metadata": result_metadata(result, existing=None),
        **request.layer_kwargs,
    }


def _find_output(viewer: Any, request: ColorizeRequest) -> Any | None:
    from napari.layers import Image

    name = output_name(request.source)
    for layer in viewer.layers:
        if (
            isinstance(layer, Image)
            and layer.name == name
            and is_colorized(layer)
            and layer.metadata[METADATA_KEY].get("source") == request.source
        ):
            return layer
    return None


def add_or_update_layer(
    viewer: napari.viewer.Viewer | None, request: ColorizeRequest, output: ColorizeOutput
) -> napari.layers.Image:
    """Make the output Image layer; with a ``viewer``, update an earlier output in place.

    Call on the main thread. An earlier output (same name, made from the same source) keeps its
    place, visibility and display settings; only its data, metadata and transforms change.
    """
    from napari.layers import Image

    data, kwargs = _layer_content(request, output)
    existing = None if viewer is None else _find_output(viewer, request)
    if existing is not None and existing.ndim == data.ndim - 1 and existing.rgb:
        # Transforms first (they are checked against ndim, which is unchanged), then the data.
        for key in ("scale", "translate", "rotate", "shear", "affine", "axis_labels", "units"):
            setattr(existing, key, kwargs[key])
        existing.data = data
        existing.metadata = kwargs["metadata"]
        return existing
    layer = Image(data, name=output_name(request.source), rgb=True, **kwargs)
    if viewer is None:
        return layer
    if existing is not None:  # a plane run replaced by a stack run, or back: replace in place
        index = viewer.layers.index(existing)
        viewer.layers.remove(existing)
        viewer.layers.insert(index, layer)
    else:
        viewer.add_layer(layer)
    return layer


def colorize_layer(
    layer: napari.layers.Image,
    viewer: napari.viewer.Viewer | None = None,
    weights: str | os.PathLike[str] | Colorizer | None = None,
    device: str = "auto",
    *,
    batch_size: int = 8,
    normalization: str = "auto",
    percentiles: tuple[float, float] = (0.5, 99.5),
    value_range: tuple[float, float] | None = None,
    plane: tuple[int, ...] | None = None,
    with_class: bool = True,
    network_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelEvent | None = None,
) -> napari.layers.Image:
    """Colourise a napari Image layer into a new RGB layer named ``"<source> colorized"``.

    Parameters
    ----------
    layer : napari.layers.Image
        Grayscale (any dtype, 2D or a stack) or RGB/RGBA (recoloured from its luminance); numpy,
        dask or multiscale (its highest resolution). Never modified.
    viewer : napari.Viewer, optional
        Add the output to this viewer, or update the output of an earlier run on the same layer.
    weights : path, Colorizer or None
        The weights file (None: ``$NAPARI_CHROMAGAN_WEIGHTS``, then the user cache), or a ready
        :class:`Colorizer`; loaded colourizers are cached between calls.
    device : str
        "auto", "cpu", "cuda", "cuda:N" or "mps" (ignored when ``weights`` is a Colorizer).
    batch_size : int
        Planes per network call; halved automatically when the GPU runs out of memory.
    normalization, percentiles, value_range
        How intensities map to lightness (see :func:`napari_chromagan.engine.normalize.resolve_normalization`).
    plane : tuple of int, optional
        Colourise only this plane of a stack (an index per leading axis).
    with_class : bool
        Also compute each plane's class distribution (shown by the Class distribution widget).
    network_size : int, optional
        The size the network runs at (None: the weights' own); see :class:`Colorizer`.
    progress, cancel : callable, threading.Event, optional
        ``progress(done, total)`` in planes; set ``cancel`` to stop at the next batch (raises
        :class:`~napari_chromagan.errors.Cancelled`).

    Returns
    -------
    napari.layers.Image
        uint8 RGB, with the source's scale, translate, rotate, shear, affine, axis labels and
        units (a plane's: those of its spatial axes), and a :class:`LayerResult` in its metadata.

    Raises
    ------
    TypeError
        ``layer`` is not an Image layer.
    UnsupportedImageError, WeightsNotFoundError, CheckpointError, DeviceError, NetworkSizeError,
    Cancelled, MemoryError
        From :mod:`napari_chromagan.errors`, each saying what to do (MemoryError: one plane does
        not fit in memory even on the CPU).
    """
    request = prepare_request(layer, plane)
    options = {"batch_size": batch_size, "normalization": normalization, "cancel": cancel}
    options.update(percentiles=percentiles, value_range=value_range, with_class=with_class)
    options.update(network_size=network_size)
    output = run_request(request, weights, device, progress=progress, **options)
    return add_or_update_layer(viewer, request, output)
