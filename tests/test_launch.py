"""`napari-chromagan napari`: the README's main command opens napari with the widgets and a sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_S, make_generator

from napari_chromagan.weights.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _env(weights: Path) -> dict[str, str]:
    """The environment a user has: torch's default thread count (the abort at exit below needed
    torch's thread pool; with OMP_NUM_THREADS=1 it did not show)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {
        **env,
        "NAPARI_CHROMAGAN_WEIGHTS": str(weights),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }


@pytest.mark.qt
def test_napari_command_docks_the_widgets_colourises_and_screenshots(tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    weights = save_checkpoint(tmp_path / "tiny.pt", make_generator())
    shot = tmp_path / "shot.png"
    env = _env(weights)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_chromagan",
            "napari",
            "--sample",
            "camera",
            "--screenshot",
            str(shot),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[0] > 500 and image.shape[1] > 800
    # the colourised photograph is on screen: some pixels are far from gray
    spread = image.max(axis=2).astype(int) - image.min(axis=2)
    assert (spread > 30).mean() > 0.01
    # refusing to overwrite a screenshot
    again = subprocess.run(
        [sys.executable, "-m", "napari_chromagan", "napari", "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.qt
@pytest.mark.slow
def test_napari_command_exits_cleanly_every_time(tmp_path):
    """The README's main command, three times in a row: exit code 0 each time.

    It used to die with SIGABRT (rc 134, "terminate called without an active exception") in
    about half its runs, after the screenshot was written: the Chroma blend widget's gamut-table
    thread was still inside torch when Python finalised (see napari_chromagan.napari._threads).
    """
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    env = _env(save_checkpoint(tmp_path / "tiny.pt", make_generator()))
    for run in range(3):
        shot = tmp_path / f"shot-{run}.png"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "napari_chromagan",
                "napari",
                "--sample",
                "camera",
                "--screenshot",
                str(shot),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_S,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, (run, proc.returncode, proc.stderr[-3000:])
        assert "terminate called" not in proc.stderr
        assert shot.is_file() and shot.stat().st_size > 10_000


@pytest.mark.qt
def test_napari_command_without_a_display_starts_a_virtual_one_or_says_what_to_do(tmp_path):
    """The README's headless command needs no xvfb-run prefix (which setup.sh would have to install first)."""
    import shutil

    if sys.platform != "linux" or shutil.which("Xvfb") is None:
        pytest.skip("needs Linux with Xvfb (scripts/setup.sh installs it)")
    env = {
        k: v
        for k, v in _env(save_checkpoint(tmp_path / "tiny.pt", make_generator())).items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    command = [sys.executable, "-m", "napari_chromagan", "napari", "--sample", "camera"]
    refused = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=HANG_S, cwd=tmp_path
    )
    assert (
        refused.returncode == 2
        and "--screenshot" in refused.stderr
        and "no display" in refused.stderr
    )
    shot = tmp_path / "headless.png"
    proc = subprocess.run(
        [*command, "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "virtual one (Xvfb" in proc.stderr and shot.stat().st_size > 10_000
