"""The command line as users start it: ``python -m napari_chromagan`` in a fresh interpreter,
a fast ``--help``, and progress bars on a terminal. The image helpers are test_cli's."""

from __future__ import annotations

import os
import subprocess
import sys

import test_cli
from conftest import HANG_S
from test_cli import SRC, H, W, _gray8, _stack16

from napari_chromagan.cli import main
from napari_chromagan.files import imageio

weights = test_cli.weights  # the module-scoped fixture, by name


def _env() -> dict[str, str]:
    env = dict(os.environ)  # carries the isolated NAPARI_CHROMAGAN_CACHE of the autouse fixture
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def test_python_m_colorize(tmp_path, weights):
    _gray8(tmp_path / "a.png")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_chromagan",
            "colorize",
            str(tmp_path / "a.png"),
            "-o",
            str(out),
            "--weights",
            str(weights),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=HANG_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert "colourised 1 image into" in proc.stderr
    assert imageio.read_image(out / "a_colorized.png").shape == (H, W, 3)


def test_help_is_fast_and_lists_colorize():
    proc = subprocess.run(
        [sys.executable, "-m", "napari_chromagan", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=HANG_S,
    )
    assert proc.returncode == 0
    assert "usage: python -m napari_chromagan" in proc.stdout and "colorize" in proc.stdout

    check = (
        "import sys; from napari_chromagan.cli import main; code = main(['colorize', '--help']); "
        "heavy = [m for m in ('torch', 'numpy', 'PIL', 'tifffile') if m in sys.modules]; "
        "assert code == 0 and not heavy, (code, heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=_env(), timeout=HANG_S
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("--overwrite", "--skip-existing", "--format", "--range", "--device"):
        assert option in proc.stdout


class _Terminal:
    """A stderr that says it is a terminal, so that tqdm draws its bars."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_bars_on_a_terminal(tmp_path, weights, monkeypatch):
    _gray8(tmp_path / "in" / "a.png")
    _stack16(tmp_path / "in" / "s.tif")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = ["colorize", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    assert main([*args, "--weights", str(weights), "--batch-size", "1"]) == 0
    text = "".join(terminal.parts)
    assert "colourising: 100%" in text and "2/2" in text  # images
    assert "s.tif:   0%" in text and "0/3 [" in text  # planes of the stack
    assert "colourised 2 images into" in text
