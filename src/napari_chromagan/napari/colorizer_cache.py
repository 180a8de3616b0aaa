"""Loaded colourizers, cached while their weights file is unchanged (no Qt, no napari)."""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from napari_chromagan.engine.colorize import Colorizer

__all__ = ["clear_colorizer_cache", "colorizer_factory", "cpu_copy", "load_colorizer"]

_CACHE_SIZE = 2

_cache: OrderedDict[tuple[str, int, int, str, int | None], Colorizer] = OrderedDict()
_cache_lock = threading.Lock()


def load_colorizer(
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    network_size: int | None = None,
) -> Colorizer:
    """A :class:`Colorizer` for ``weights`` on ``device``, reused while the file is unchanged.

    ``weights`` is resolved as :meth:`Colorizer.from_checkpoint` does (a path, else
    ``$NAPARI_CHROMAGAN_WEIGHTS``, else the user cache); ``network_size`` as for
    :class:`Colorizer` (None: the weights' own). The last two colourizers are kept, keyed by
    (file, modification time, size, device, network size), so repeated runs skip the loading.

    Raises
    ------
    WeightsNotFoundError, CheckpointError, DeviceError, NetworkSizeError
    """
    from napari_chromagan.engine.colorize import Colorizer, select_device
    from napari_chromagan.weights.checkpoint import load_checkpoint
    from napari_chromagan.weights.lookup import resolve_weights

    path = resolve_weights(weights)
    dev, _ = select_device(device)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(dev), network_size)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
        ckpt = load_checkpoint(path)
        colorizer = Colorizer(
            ckpt.generator, dev, metadata=ckpt.metadata, weights=path, network_size=network_size
        )
        _cache[key] = colorizer
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return colorizer


def clear_colorizer_cache() -> None:
    """Forget the cached colourizers (their GPU memory is freed once nothing else holds them)."""
    with _cache_lock:
        _cache.clear()


def colorizer_factory(
    weights: Any, device: str, network_size: int | None = None
) -> tuple[Callable[[str], Colorizer], str]:
    """A ``device -> Colorizer`` factory for ``weights`` (a path, None or a Colorizer) at
    ``network_size`` (None: the weights' own; a Colorizer keeps its own and refuses another)."""
    from napari_chromagan.engine.colorize import Colorizer

    if isinstance(weights, Colorizer):
        given = weights
        given.require_network_size(network_size)

        def from_instance(dev: str) -> Colorizer:
            if dev == "cpu" and given.device.type != "cpu":
                # Moving the caller's generator would change their object: copy it instead.
                return Colorizer(
                    cpu_copy(given.generator),
                    "cpu",
                    metadata=given.metadata,
                    weights=given.weights,
                    precision=given.precision,
                )
            return given

        return from_instance, str(given.device)
    return (lambda dev: load_colorizer(weights, dev, network_size)), device


def cpu_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers are made directly in host memory.

    ``copy.deepcopy(module).cpu()`` would first copy every tensor on the module's device: the
    CPU fallback runs after the GPU ran out of memory, where that copy is the next failure.
    Each tensor is copied once, device to host, and the module's structure around them by
    deepcopy (shared tensors stay shared).
    """
    from torch import nn

    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in memo:
            continue
        host = tensor.detach().to("cpu", copy=True)
        memo[id(tensor)] = (
            nn.Parameter(host, requires_grad=tensor.requires_grad)
            if isinstance(tensor, nn.Parameter)
            else host
        )
    return copy.deepcopy(module, memo)
