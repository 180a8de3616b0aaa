"""Background threads that can never outlive the interpreter while they run torch code.

Why this exists: a daemon thread that is still inside a torch operation when Python finalises
is stopped by ``pthread_exit`` the moment it asks for the GIL back. That unwinds through torch's
C++ frames, which do not allow it, and the process dies with ``terminate called without an
active exception`` (SIGABRT) after everything else has finished. ``napari-chromagan napari
--screenshot`` hit this in about half its runs: the Chroma blend widget's gamut-table thread
(0.3 s of CPU on a quiet machine, 6 s on a loaded one) was still running when the command
returned.

Every thread started here is registered, and an ``atexit`` handler, which Python runs before it
starts finalising and while daemon threads still run normally, sets each thread's cancel event
and joins it. The threads stay daemons so that a stuck one cannot hang the exit for ever: the
join waits ``EXIT_TIMEOUT`` seconds at most.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_TIMEOUT", "join_all", "live_threads", "start_thread"]

EXIT_TIMEOUT = 60.0

_lock = threading.Lock()
_live: dict[threading.Thread, threading.Event | None] = {}


def start_thread(
    target: Callable[[], object], name: str, cancel: threading.Event | None = None
) -> threading.Thread:
    """Start ``target`` in a daemon thread that is cancelled (``cancel.set()``) and joined at exit."""

    def run() -> None:
        try:
            target()
        finally:
            with _lock:
                _live.pop(thread, None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _lock:
        _live[thread] = cancel
    thread.start()
    return thread


def live_threads() -> list[threading.Thread]:
    """The threads started by :func:`start_thread` that have not finished yet."""
    with _lock:
        return list(_live)


def join_all(timeout: float = EXIT_TIMEOUT) -> list[threading.Thread]:
    """Cancel and join every live thread; return those still running after ``timeout`` seconds."""
    with _lock:
        pending = list(_live.items())
    for _, cancel in pending:
        if cancel is not None:
            cancel.set()
    deadline = time.monotonic() + timeout
    for thread, _ in pending:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread, _ in pending if thread.is_alive()]


atexit.register(join_all)
