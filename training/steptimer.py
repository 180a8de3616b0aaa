"""Where a training step's time goes: wall time per phase, for ``bench/bench_train.py``.

The trainer marks its phases (generator forward, teacher, backward, optimizer updates, the critic's
steps...) with :meth:`StepTimer.phase`; with no timer attached the marks cost nothing. A timer
synchronises the device at every boundary, so each phase's kernels are charged to it and not to
whichever phase next waits on the GPU. That removes the overlap between the host queueing one
phase and the device running the previous one, so the phases add up to a little more than an
untimed step: the benchmark reports both.

Each phase is also a :func:`torch.profiler.record_function` range, so the same names show up in a
``torch.profiler`` trace.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

__all__ = ["StepTimer"]


class StepTimer:
    """Accumulates the wall time of named phases on ``device``."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        with torch.profiler.record_function(name):
            yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        self.calls[name] = self.calls.get(name, 0) + 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def per_step(self, steps: int) -> dict[str, float]:
        """Seconds per step of each phase, in the order the phases first ran."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return {name: total / steps for name, total in self.seconds.items()}
