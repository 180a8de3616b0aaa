"""Colourise a napari Image layer: the scripted API behind the Colorize widget.

The work is split so that the slow part never touches napari:

1. :func:`prepare_request` (main thread) reads what is needed from the source layer: its data
   (the highest-resolution level of a multiscale layer, or one plane of a stack), whether it is
   RGB, and the transforms the output layer must carry.
2. :func:`run_request` (any thread) loads the weights (cached), runs the engine, and halves the
   batch or falls back to the CPU when the GPU runs out of memory (:func:`run_with_fallback`).
   :func:`iter_run_request` does the same as a generator of progress events, for ``thread_worker``.
3. :func:`add_or_update_layer` (main thread) makes the output layer, or updates the one an
   earlier run made from the same source.

:func:`colorize_layer` chains the three. The source layer is only ever read.

napari is imported inside the functions that need it; Qt is never imported here.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import queue
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._threads import start_thread
from .layer_result import METADATA_KEY, LayerResult, is_colorized, result_metadata

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from .colorize import CancelEvent, Colorizer, ColorizeResult

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

log = logging.getLogger(__name__)

_CACHE_SIZE = 2


class MemoryFallbackWarning(RuntimeWarning):
    """The device ran out of memory: the batch was made smaller, or the work moved to the CPU."""


# --------------------------------------------------------------------------- weights cache

_cache: OrderedDict[tuple[str, int, int, str], Colorizer] = OrderedDict()
_cache_lock = threading.Lock()


def load_colorizer(weights: str | os.PathLike[str] | None = None, device: str = "auto") -> Colorizer:
    """A :class:`Colorizer` for ``weights`` on ``device``, reused while the file is unchanged.

    ``weights`` is resolved as :meth:`Colorizer.from_checkpoint` does (a path, else
    ``$NAPARI_CHROMAGAN_WEIGHTS``, else the user cache). The last two colourizers are kept,
    keyed by (file, modification time, size, device), so repeated runs skip the loading.

    Raises
    ------
    WeightsNotFoundError, CheckpointError, DeviceError
    """
    from .checkpoint import load_checkpoint
    from .colorize import Colorizer
    from .device import select_device
    from .weights import resolve_weights

    path = resolve_weights(weights)
    dev, _ = select_device(device)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(dev))
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
        ckpt = load_checkpoint(path)
        colorizer = Colorizer(ckpt.generator, dev, metadata=ckpt.metadata, weights=path)
        _cache[key] = colorizer
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return colorizer


def clear_colorizer_cache() -> None:
    """Forget the cached colourizers (their GPU memory is freed once nothing else holds them)."""
    with _cache_lock:
        _cache.clear()


def _colorizer_factory(weights: Any, device: str) -> tuple[Callable[[str], Colorizer], str]:
    """A ``device -> Colorizer`` factory for ``weights`` (a path, None or a Colorizer)."""
    from .colorize import Colorizer

    if isinstance(weights, Colorizer):
        given = weights

        def from_instance(dev: str) -> Colorizer:
            if dev == "cpu" and given.device.type != "cpu":
                # Moving the caller's generator would change their object: copy it instead.
                return Colorizer(
                    copy.deepcopy(given.generator).cpu(), "cpu", metadata=given.metadata, weights=given.weights
                )
            return given

        return from_instance, str(given.device)
    return (lambda dev: load_colorizer(weights, dev)), device


# --------------------------------------------------------------------------- out of memory


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device ran out of memory (CUDA, MPS or the CPU allocator)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_device_memory(device: Any) -> None:
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def run_with_fallback(
    colorizer_for: Callable[[str], Colorizer],
    image: Any,
    device: str = "auto",
    *,
    batch_size: int = 8,
    warn: Callable[[str], None] | None = None,
    **colorize_kwargs: Any,
) -> tuple[ColorizeResult, Colorizer]:
    """Run ``colorizer_for(device).colorize(image, ...)``, surviving out-of-memory errors.

    On an out-of-memory error the device's cache is emptied and the run starts again with half
    the batch size, down to 1; if even that fails on a GPU, the run moves to the CPU
    (``colorizer_for("cpu")``). Each change is reported once through ``warn`` (by default
    ``warnings.warn(..., MemoryFallbackWarning)``).

    Parameters
    ----------
    colorizer_for : callable
        ``device -> Colorizer``, for instance ``lambda d: load_colorizer(path, d)``.
    image : array
        What :meth:`Colorizer.colorize` takes.
    device : str
        The device to try first.
    batch_size : int
        The batch size to try first.
    **colorize_kwargs
        Passed on to :meth:`Colorizer.colorize` (normalisation, progress, cancel...).

    Returns
    -------
    (ColorizeResult, Colorizer)
        The result and the colourizer that produced it.

    Raises
    ------
    MemoryError
        When even one plane does not fit on the CPU.
    """
    if warn is None:

        def warn(message: str) -> None:
            warnings.warn(message, MemoryFallbackWarning, stacklevel=3)

    from .colorize import check_batch_size

    first_batch = size = check_batch_size(batch_size)  # before a model is loaded for nothing
    colorizer = colorizer_for(device)
    while True:
        try:
            result = colorizer.colorize(image, batch_size=size, **colorize_kwargs)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            where = str(colorizer.device)
            del exc  # drop the traceback's references to the failed batch's tensors
            _free_device_memory(colorizer.device)
            if size > 1:
                log.info("out of memory on %s at batch size %d; retrying with %d", where, size, size // 2)
                size //= 2
                continue
            if colorizer.device.type == "cpu":
                raise MemoryError(
                    "out of memory on the CPU even one plane at a time: colourise the current "
                    "plane only, crop the image, or close other programs"
                ) from None
            warn(
                f"out of GPU memory on {where} even at batch size 1: running on the CPU instead "
                "(slower). Free GPU memory or pick the cpu device to skip the retries."
            )
            colorizer = colorizer_for("cpu")
            size = first_batch  # the CPU starts again from the batch size asked for
            continue
        if size < first_batch:
            warn(
                f"out of memory on {colorizer.device} at batch size {first_batch}: finished with "
                f"batch size {size}. Set the batch size to {size} to skip the retries."
            )
        return result, colorizer


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
    # what made it (napari_chromagan.provenance): kept in the layer, written into saved files
    provenance: dict[str, Any] | None = None


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` planes colourised (an event of :func:`iter_run_request`)."""

    done: int
    total: int


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


def _shear_matrix(shear: np.ndarray, ndim: int) -> np.ndarray:
    shear = np.asarray(shear, float)
    if shear.ndim == 2:
        return shear
    matrix = np.eye(ndim)
    matrix[np.triu_indices(ndim, 1)] = shear
    return matrix


def _block_diagonal(matrix: np.ndarray, k: int) -> bool:
    return not (np.any(matrix[:k, k:]) or np.any(matrix[k:, :k]))


def _transform_kwargs(layer: Any, plane: tuple[int, ...] | None) -> dict[str, Any]:
    """The source's transforms, axis labels and units, restricted to the spatial axes of a plane."""
    n = layer.ndim
    affine = layer.affine
    kwargs: dict[str, Any] = {
        "scale": np.asarray(layer.scale, float),
        "translate": np.asarray(layer.translate, float),
        "rotate": np.asarray(layer.rotate, float),
        "shear": _shear_matrix(layer.shear, n),
        "affine": np.asarray(affine.affine_matrix, float),
        "axis_labels": tuple(layer.axis_labels),
        "units": tuple(layer.units),
    }
    if plane is None:
        return kwargs
    k = len(plane)
    s = slice(k, n)
    kwargs["axis_labels"] = kwargs["axis_labels"][s]
    kwargs["units"] = kwargs["units"][s]
    linear = np.asarray(affine.linear_matrix, float)
    if all(_block_diagonal(m, k) for m in (kwargs["rotate"], kwargs["shear"], linear)):
        # The plane's spatial placement does not depend on its index: slice each part.
        kwargs["scale"] = kwargs["scale"][s]
        kwargs["translate"] = kwargs["translate"][s]
        kwargs["rotate"] = kwargs["rotate"][s, s]
        kwargs["shear"] = kwargs["shear"][s, s]
        kwargs["affine"] = _homogeneous(linear[s, s], np.asarray(affine.translate, float)[s])
        return kwargs
    # Stack and plane axes are mixed (a 3D rotation or shear): place the plane with one affine.
    physical = kwargs["rotate"] @ kwargs["shear"] @ np.diag(kwargs["scale"])
    total = kwargs["affine"] @ _homogeneous(physical, kwargs["translate"])
    translate = total[s, n] + total[s, :k] @ np.asarray(plane, float)
    spatial = n - k
    kwargs.update(
        scale=np.ones(spatial),
        translate=np.zeros(spatial),
        rotate=np.eye(spatial),
        shear=np.eye(spatial),
        affine=_homogeneous(total[s, s], translate),
    )
    return kwargs


def _homogeneous(linear: np.ndarray, translate: np.ndarray) -> np.ndarray:
    n = linear.shape[0]
    matrix = np.eye(n + 1)
    matrix[:n, :n] = linear
    matrix[:n, n] = translate
    return matrix


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
            raise ValueError(f"plane {plane} is outside layer {layer.name!r}'s leading shape {leading}")
        if not plane:
            plane = None
    image = data if plane is None else data[plane]
    return ColorizeRequest(
        source=layer.name,
        image=image,
        rgb=rgb,
        plane=plane,
        layer_kwargs=_transform_kwargs(layer, plane),
    )


def run_request(
    request: ColorizeRequest,
    weights: Any = None,
    device: str = "auto",
    *,
    batch_size: int = 8,
    normalization: str = "auto",
    percentiles: tuple[float, float] = (0.5, 99.5),
    value_range: tuple[float, float] | None = None,
    with_class: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelEvent | None = None,
    warn: Callable[[str], None] | None = None,
) -> ColorizeOutput:
    """Colourise a prepared request (any thread; touches no napari object).

    ``weights``: a path, None (the default weights) or a :class:`Colorizer`.
    """
    start = time.perf_counter()
    colorizer_for, device = _colorizer_factory(weights, device)
    result, colorizer = run_with_fallback(
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
        progress=progress,
        cancel=cancel,
    )
    from .provenance import record_for

    record = record_for(colorizer, result)  # the colourizer that finished, after any CPU fallback
    return ColorizeOutput(result, colorizer.class_head_trained, time.perf_counter() - start, record)


_DONE = object()


def iter_run_request(
    request: ColorizeRequest, *, cancel: threading.Event | None = None, **kwargs: Any
) -> Generator[Progress | str, None, ColorizeOutput]:
    """:func:`run_request` as a generator, for ``thread_worker``.

    Yields a :class:`Progress` after each batch and a ``str`` for each out-of-memory warning;
    returns the :class:`ColorizeOutput` (``yield from`` gives it). The engine reports progress
    through a callback, so it runs in a helper thread that feeds this generator. Closing the
    generator early sets ``cancel``, which stops the engine at its next batch.
    """
    cancel = cancel if cancel is not None else threading.Event()
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = run_request(
                request,
                cancel=cancel,
                progress=lambda done, total: events.put(Progress(done, total)),
                warn=events.put,
                **kwargs,
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = start_thread(target, name="napari-chromagan-colorize", cancel=cancel)
    try:
        while (event := events.get()) is not _DONE:
            yield event
    finally:
        if thread.is_alive():
            cancel.set()
        thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]


# --------------------------------------------------------------------------- the output layer


def _layer_content(request: ColorizeRequest, output: ColorizeOutput) -> tuple[np.ndarray, dict[str, Any]]:
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
        The weights file (None: ``$NAPARI_CHROMAGAN_WEIGHTS``, then the user cache), or a
        ready :class:`Colorizer`. Loaded colourizers are cached between calls.
    device : str
        "auto", "cpu", "cuda", "cuda:N" or "mps" (ignored when ``weights`` is a Colorizer).
    batch_size : int
        Planes per network call; halved automatically when the GPU runs out of memory.
    normalization, percentiles, value_range
        How intensities map to lightness (see :func:`napari_chromagan.normalize.resolve_normalization`).
    plane : tuple of int, optional
        Colourise only this plane of a stack (an index per leading axis).
    with_class : bool
        Also compute each plane's class distribution (shown by the Class distribution widget).
    progress : callable, optional
        ``progress(done, total)`` in planes.
    cancel : threading.Event, optional
        Set it to stop at the next batch (raises :class:`~napari_chromagan.errors.Cancelled`).

    Returns
    -------
    napari.layers.Image
        uint8 RGB, with the source's scale, translate, rotate, shear, affine, axis labels and
        units (those of the spatial axes for a plane), and a
        :class:`~napari_chromagan.layer_result.LayerResult` in its metadata.

    Raises
    ------
    TypeError
        ``layer`` is not an Image layer.
    UnsupportedImageError, WeightsNotFoundError, CheckpointError, DeviceError, Cancelled
        From :mod:`napari_chromagan.errors`, each saying what to do.
    MemoryError
        When one plane does not fit in memory even on the CPU.
    """
    request = prepare_request(layer, plane)
    output = run_request(
        request,
        weights,
        device,
        batch_size=batch_size,
        normalization=normalization,
        percentiles=percentiles,
        value_range=value_range,
        with_class=with_class,
        progress=progress,
        cancel=cancel,
    )
    return add_or_update_layer(viewer, request, output)

