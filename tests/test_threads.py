"""napari_chromagan.napari._threads: background threads are cancelled and joined before Python finalises,
and the suite's leak check fails a test that leaves a worker running.

Why it matters: a daemon thread still inside a torch operation when the interpreter finalises is
stopped mid-C++ and the process dies with SIGABRT ("terminate called without an active
exception") after everything else has finished. A plain ``threading.Thread(daemon=True)`` running
the loop below aborts that way in 5 runs of 5 on the 2-core VM (2026-12-01); started through
``start_thread`` it exits 0 in 5 of 5.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import HANG_S, check_no_leaked_threads

from napari_chromagan.napari import _threads

# torch work in a loop until the cancel event is set; the main thread returns as soon as the
# loop has started, so the interpreter finalises while the thread is inside torch
_SCRIPT = textwrap.dedent(
    """
    import threading, torch
    from napari_chromagan.napari._threads import start_thread

    torch.set_num_threads(1)
    cancel, started = threading.Event(), threading.Event()
    rounds = []

    def work():
        a = torch.randn(256, 256)
        started.set()
        while not cancel.is_set():
            a = torch.tanh(a @ a)
            rounds.append(1)
        print("cancelled after", len(rounds), "rounds", flush=True)

    start_thread(work, name="torch-loop", cancel=cancel)
    started.wait()
    """
)


def test_a_thread_in_torch_work_is_cancelled_and_joined_at_exit():
    for run in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            capture_output=True,
            text=True,
            timeout=HANG_S,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, (run, proc.returncode, proc.stderr[-2000:])
        assert "terminate called" not in proc.stderr
        # the thread saw its cancel event (set by the atexit handler) and ended by itself
        assert proc.stdout.startswith("cancelled after"), proc.stdout


def test_join_all_cancels_and_reports_a_thread_that_does_not_stop():
    cancel = threading.Event()
    done = threading.Event()
    stop_stuck = threading.Event()
    polite = _threads.start_thread(
        lambda: (cancel.wait(), done.set()), name="polite", cancel=cancel
    )
    stuck = _threads.start_thread(stop_stuck.wait, name="stuck")  # no cancel event: cannot be told
    try:
        assert {polite, stuck} <= set(_threads.live_threads())
        left = _threads.join_all(timeout=0.5)
        assert left == [stuck]
        assert cancel.is_set() and done.is_set() and not polite.is_alive()
        assert polite not in _threads.live_threads()
    finally:
        stop_stuck.set()
        stuck.join(10)
    assert _threads.live_threads() == []


def test_the_leak_check_fails_a_test_that_leaves_a_thread_running():
    cancel = threading.Event()
    thread = _threads.start_thread(cancel.wait, name="leaked-worker", cancel=cancel)
    with pytest.raises(pytest.fail.Exception, match="leaked-worker"):
        check_no_leaked_threads(grace_s=0.2)
    # and it cleaned up after itself, so the next test starts without it
    assert cancel.is_set() and not thread.is_alive() and _threads.live_threads() == []


def test_the_leak_check_waits_for_a_thread_about_to_finish():
    _threads.start_thread(lambda: time.sleep(0.3), name="finishing")
    check_no_leaked_threads(grace_s=30)
    assert _threads.live_threads() == []


@pytest.mark.qt
def test_the_leak_check_fails_a_test_that_leaves_a_qthreadpool_worker_running(qapp):
    from qtpy.QtCore import QRunnable, QThreadPool

    release = threading.Event()

    class Blocked(QRunnable):
        def run(self) -> None:
            release.wait(30)

    QThreadPool.globalInstance().start(Blocked())
    try:
        with pytest.raises(pytest.fail.Exception, match="QThreadPool worker"):
            check_no_leaked_threads(grace_s=0.2)
    finally:
        release.set()
        assert QThreadPool.globalInstance().waitForDone(30_000)
