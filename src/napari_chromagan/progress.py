"""The one protocol for long work: a generator of progress events, and what Cancel means.

Long work in napari-chromagan (colourising an array, a layer or a folder of files, rendering a
chroma blend over a stack, applying colour hints) is written once, as a generator that yields a
:class:`Progress` event after each unit of work (a batch of planes, a plane) and returns its
result (``StopIteration.value``; ``yield from`` gives it). Everything else is an adapter of it:

* the callback API (``progress(done, total)``, ``cancel=``) drives the generator with
  :func:`run_events`;
* napari's ``thread_worker`` runs the generator itself (each yield is a chance to quit);
* the command line reads the events and draws its bars.

Cancel means one thing everywhere: the work stops at the next unit boundary, before starting it,
and raises :class:`~napari_chromagan.errors.Cancelled`, whether the caller set its ``cancel``
event (:func:`check_cancel`) or closed the generator (``generator.close()``, what
``worker.quit()`` does). Nothing is half-written: a unit that started is finished first.

No Qt, napari or torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from napari_chromagan.errors import Cancelled

__all__ = ["CancelEvent", "Progress", "check_cancel", "run_events"]

T = TypeVar("T")


class CancelEvent(Protocol):
    """What a ``cancel`` argument must be: a :class:`threading.Event`, or anything with ``is_set``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of work finished.

    ``unit`` says what is counted ("planes" unless said otherwise); ``item`` names what the
    units belong to when a run has several (the file whose planes these are), else None.
    """

    done: int
    total: int
    unit: str = "planes"
    item: str | None = None


def check_cancel(
    cancel: CancelEvent | None, what: str, done: int, total: int, unit: str = "planes"
) -> None:
    """Raise :class:`Cancelled` ("<what> cancelled after <done> of <total> <unit>") if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} cancelled after {done} of {total} {unit}")


def run_events(
    events: Generator[Any, None, T],
    progress: Callable[[int, int], None] | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> T:
    """Drive ``events`` to the end; return its result. The callback adapter of the protocol.

    Each :class:`Progress` event is passed to ``progress(done, total)``; any other event (a
    warning's text, say) to ``on_event``, and dropped without it.
    """
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Progress):
            if progress is not None:
                progress(event.done, event.total)
        elif on_event is not None:
            on_event(event)
