"""The out-of-memory policy, shared by the napari plugin and the command line (no Qt).

When the device runs out of memory, its cache is emptied and the work is tried again with half
the batch size, down to 1; if even that fails on a GPU, the work moves to the CPU, starting again
from the batch size asked for. Each change is reported once. :class:`MemoryFallback` holds that
policy's state; :func:`iter_with_fallback` applies it to colourising one array (what a layer
run does), and the file pipeline applies it batch by batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from napari_chromagan.engine.inputs import check_batch_size
from napari_chromagan.progress import Progress, run_events

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.engine.colorize import Colorizer
    from napari_chromagan.engine.result import ColorizeResult

__all__ = [
    "MemoryFallback",
    "MemoryFallbackWarning",
    "free_device_memory",
    "is_out_of_memory",
    "iter_with_fallback",
    "run_with_fallback",
]

log = logging.getLogger(__name__)


class MemoryFallbackWarning(RuntimeWarning):
    """The device ran out of memory: the batch was made smaller, or the work moved to the CPU."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device ran out of memory (CUDA, MPS or the CPU allocator)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory(device: Any) -> None:
    """Return the cached blocks of ``device``'s allocator (CUDA, MPS) to the driver."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def _warn(message: str) -> None:
    warnings.warn(message, MemoryFallbackWarning, stacklevel=4)


class MemoryFallback:
    """The policy's state: the colourizer and batch size to use now.

    Parameters
    ----------
    colorizer_for : callable
        ``device -> Colorizer``, for instance ``lambda d: load_colorizer(path, d)``.
    device : str
        The device to try first.
    batch_size : int
        The batch size to try first (checked before a model is loaded for nothing).
    warn : callable, optional
        Where the one-line reports go (default: ``warnings.warn(..., MemoryFallbackWarning)``).
    """

    def __init__(
        self,
        colorizer_for: Callable[[str], Colorizer],
        device: str,
        batch_size: int,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.first_batch = self.batch_size = check_batch_size(batch_size)
        self.colorizer_for = colorizer_for
        self.warn = warn if warn is not None else _warn
        self.colorizer = colorizer_for(device)

    def recover(self, exc: BaseException) -> None:
        """Adapt to ``exc`` (raised by a batch) so that the caller can retry, or re-raise it.

        Re-raises ``exc`` when it is not an out-of-memory error; raises :class:`MemoryError`
        when one plane does not fit even on the CPU.
        """
        if not is_out_of_memory(exc):
            raise exc
        where = str(self.colorizer.device)
        free_device_memory(self.colorizer.device)
        if self.batch_size > 1:
            log.info(
                "out of memory on %s at batch size %d; retrying with %d",
                where,
                self.batch_size,
                self.batch_size // 2,
            )
            self.batch_size //= 2
            return
        if self.colorizer.device.type == "cpu":
            raise MemoryError(
                "out of memory on the CPU even one plane at a time: colourise the current "
                "plane only, crop the image, or close other programs"
            ) from None
        self.warn(
            f"out of GPU memory on {where} even at batch size 1: running on the CPU instead "
            "(slower). Free GPU memory or pick the cpu device to skip the retries."
        )
        self.colorizer = self.colorizer_for("cpu")
        self.batch_size = self.first_batch  # the CPU starts again from the batch size asked for

    def finish(self) -> None:
        """Say, once, that the run finished with a smaller batch than asked for."""
        if self.batch_size < self.first_batch:
            self.warn(
                f"out of memory on {self.colorizer.device} at batch size {self.first_batch}: finished "
                f"with batch size {self.batch_size}. Set the batch size to {self.batch_size} to skip the retries."
            )


def iter_with_fallback(
    colorizer_for: Callable[[str], Colorizer],
    image: Any,
    device: str = "auto",
    *,
    batch_size: int = 8,
    warn: Callable[[str], None] | None = None,
    **colorize_kwargs: Any,
) -> Generator[Progress | str, None, tuple[ColorizeResult, Colorizer]]:
    """``colorizer_for(device).iter_colorize(image, ...)``, surviving out-of-memory errors.

    Yields the engine's :class:`~napari_chromagan.progress.Progress` events (a retry starts
    again from 0) and, without ``warn``, each report of the policy as a ``str``; returns
    ``(result, colorizer)``: the colourizer that finished, after any move to the CPU.
    ``colorize_kwargs`` go to :meth:`Colorizer.iter_colorize
    <napari_chromagan.engine.colorize.Colorizer.iter_colorize>`.

    Raises
    ------
    MemoryError
        When even one plane does not fit on the CPU.
    """
    pending: list[str] = []
    policy = MemoryFallback(
        colorizer_for, device, batch_size, warn if warn is not None else pending.append
    )
    while True:
        try:
            result = yield from policy.colorizer.iter_colorize(
                image, batch_size=policy.batch_size, **colorize_kwargs
            )
        except Exception as exc:
            policy.recover(exc)
            del exc  # drop the traceback's references to the failed batch's tensors
            yield from _flush(pending)
            continue
        policy.finish()
        yield from _flush(pending)
        return result, policy.colorizer


def _flush(pending: list[str]) -> Generator[str, None, None]:
    while pending:
        yield pending.pop(0)


def run_with_fallback(
    colorizer_for: Callable[[str], Colorizer],
    image: Any,
    device: str = "auto",
    *,
    batch_size: int = 8,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    **colorize_kwargs: Any,
) -> tuple[ColorizeResult, Colorizer]:
    """The callback form of :func:`iter_with_fallback`: ``progress(done, total)`` in planes.

    The policy's reports go to ``warn``, by default ``warnings.warn(..., MemoryFallbackWarning)``.

    Returns
    -------
    (ColorizeResult, Colorizer)
        The result and the colourizer that produced it.
    """
    events = iter_with_fallback(
        colorizer_for, image, device, batch_size=batch_size, warn=warn, **colorize_kwargs
    )
    return run_events(events, progress, on_event=_warn)
