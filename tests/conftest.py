"""Shared fixtures: small generators with generated weights; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from napari_chromagan.device import auto_uses_bf16
from napari_chromagan.model.generator import Generator, ModelConfig

TINY = ModelConfig(width=0.125, image_size=64)
# what precision="auto" runs on this machine's CPU: bf16 where it is native (issue 16)
AUTO_ON_CPU = "bf16" if auto_uses_bf16(torch.device("cpu")) else "fp32"

# How long a test waits for a subprocess before calling it hung. A guard against hangs, not a
# speed check: CI runs on 2 cores often shared with other work, where a fresh clone's suite once
# took 1 h 44 min (2026-12-02, under a training run) and 5- and 10-minute limits killed a
# benchmark's quick run and the 10000x10000 memory probe while they were still working.
HANG_S = 1800
# The same guard for a widget test's qtbot waits (a worker thread finishing, a progress step).
HANG_MS = HANG_S * 1000


def make_generator(config: ModelConfig = TINY, seed: int = 0) -> Generator:
    """A generator with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    g = Generator(config)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # a non-zero output bias, so that the colours are not all gray
        g.decoder[-3].bias.copy_(torch.tensor([0.8, -0.6]))
    return g.eval()


def capture_notes(
    monkeypatch, modules, kinds=("error", "warning", "info")
) -> list[tuple[str, str]]:
    """Replace the napari notifications ``show_<kind>`` that each of ``modules`` uses; returns
    the list the widgets' notifications land in, as (kind, message)."""
    shown: list[tuple[str, str]] = []
    for module in modules:
        for kind in kinds:
            if hasattr(module, f"show_{kind}"):
                monkeypatch.setattr(
                    module,
                    f"show_{kind}",
                    lambda message, kind=kind: shown.append((kind, str(message))),
                )
    return shown


@pytest.fixture
def tiny_generator() -> Generator:
    return make_generator()


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch, tmp_path_factory):
    """Never look at (or write) the user's real weights cache, environment or settings."""
    monkeypatch.setenv("NAPARI_CHROMAGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("NAPARI_CHROMAGAN_WEIGHTS", raising=False)
    # the shipped demo model is the last fallback; tests that want it ask for it
    monkeypatch.setattr(
        "napari_chromagan.weights.lookup.PACKAGED_WEIGHTS",
        tmp_path_factory.mktemp("none") / "absent.pt",
    )
    monkeypatch.setenv(
        "NAPARI_CHROMAGAN_SETTINGS", str(tmp_path_factory.mktemp("config") / "settings.json")
    )


# --------------------------------------------------------------------------- leaked threads

# How long a test's background work may take to finish after the test itself has: generous, so
# that a loaded machine cannot fail a test whose worker was about to end; a worker that is stuck
# (never joined, never cancelled) still fails its own test instead of aborting the process later.
LEAK_GRACE_S = 60.0


def check_no_leaked_threads(grace_s: float = LEAK_GRACE_S) -> None:
    """Fail unless every background thread of the package and of Qt's global pool has finished
    within ``grace_s`` seconds (the idea of napari's ``dangling_qthread_pool`` fixture).

    ``napari_chromagan.napari._threads`` threads still alive are then cancelled and joined, and Qt's
    pool is waited for, so that one leak does not spill into the next test.
    """
    import sys
    import time

    from napari_chromagan.napari import _threads

    problems = []
    deadline = time.monotonic() + grace_s
    for thread in _threads.live_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in _threads.live_threads() if t.is_alive()]
    if alive:
        problems.append(
            f"napari_chromagan.napari._threads threads still running: {', '.join(alive)}"
        )
        _threads.join_all(timeout=grace_s)
    if "qtpy" in sys.modules:
        from qtpy.QtCore import QThreadPool
        from qtpy.QtWidgets import QApplication

        if QApplication.instance() is not None:
            pool = QThreadPool.globalInstance()
            if not pool.waitForDone(max(0, int(1000 * (deadline - time.monotonic())))):
                problems.append(f"{pool.activeThreadCount()} QThreadPool worker(s) still running")
                pool.waitForDone(int(1000 * grace_s))
    if problems:
        pytest.fail(
            f"the test left background work running after {grace_s:g} s: {'; '.join(problems)}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    """Every test: no worker thread outlives it (see :func:`check_no_leaked_threads`)."""
    yield
    check_no_leaked_threads()
