"""What the bad-input tests share: the inputs they start from, the context a case runs in, and
the checks on what a command said and left behind.

The tests cover the three ways in: the ``napari-chromagan`` command line
(``test_bad_inputs_cli*.py``), the Python API (``test_bad_inputs_api.py``) and ``python -m
training`` (``test_bad_inputs_training.py``). Each case asserts the exit code (or the exception
type), that the message names the problem and the way out (and, for the command lines, has no
traceback and no Python advice), and that nothing was lost, half-written or overwritten: every
file that was there before is unchanged, no temporary ``.part`` file is left, and no output
appears unless the case says which.

The cases are plain functions registered in a module's ``CASES`` and run by one parametrised
test, so that ``pytest -k`` picks one by name. A helper module rather than a ``conftest.py``
(see ``training/tiny_runs.py``).
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_generator
from PIL import Image

from napari_chromagan.cli import main as cli_main
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.weights.checkpoint import save_checkpoint

H, W = 24, 32


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Weights (good, with a NaN tensor, with a network that gives NaN) and colour images."""
    folder = tmp_path_factory.mktemp("inputs")
    good = save_checkpoint(folder / "w.pt", make_generator())
    broken = make_generator()
    with torch.no_grad():
        broken.decoder[-3].weight[0, 0, 0, 0] = float("nan")
    nan_weights = save_checkpoint(folder / "nan.pt", broken)
    negative_var = make_generator()
    for m in negative_var.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(-1.0)  # finite numbers, but sqrt(var + eps) is NaN: NaN output
            break
    nan_output = save_checkpoint(folder / "nan-output.pt", negative_var)
    images = folder / "colour"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        small = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 40), Image.BILINEAR).save(images / f"c{i}.png")
    return {"weights": good, "nan": nan_weights, "nan_output": nan_output, "images": images}


@pytest.fixture(scope="module")
def engine() -> Colorizer:
    return Colorizer(make_generator(), "cpu")


def _can_write(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@dataclass
class Ctx:
    tmp: Path
    files: dict[str, Path]
    engine: Colorizer
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    _locked: list[Path]

    @property
    def weights(self) -> Path:
        return self.files["weights"]

    # inputs
    def gray(self, name: str = "a.png", seed: int = 0) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)).save(
            path
        )
        return path

    def tiff(self, name: str, array: np.ndarray) -> Path:
        path = self.tmp / name
        tifffile.imwrite(path, array)
        return path

    def readonly(self, name: str = "locked") -> Path:
        """A folder nothing can be written into, even by root (chmod, else chattr +i)."""
        folder = self.tmp / name
        folder.mkdir()
        (folder / "kept.txt").write_text("already here\n")
        os.chmod(folder, 0o555)
        if _can_write(folder):
            subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if _can_write(folder):
            os.chmod(folder, 0o755)
            pytest.skip("cannot make a read-only folder on this machine")
        self._locked.append(folder)
        return folder

    # running
    def cli(self, *args: object) -> tuple[int, str]:
        code = cli_main([str(a) for a in args])
        return code, self.capsys.readouterr().err

    def training(self, *args: object) -> tuple[int, str]:
        from training.__main__ import main

        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        captured = self.capsys.readouterr()
        return code, captured.err + captured.out

    def forbid(self, target: object, name: str, why: str) -> None:
        """Make ``target.name`` fail the test if it is called: the work that must not start."""

        def called(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"{name} was called: {why}")

        self.monkeypatch.setattr(target, name, called)

    # checks
    def snapshot(self) -> dict[str, str]:
        state = {}
        for root, _, names in os.walk(self.tmp):
            for n in names:
                path = Path(root, n)
                state[str(path.relative_to(self.tmp))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
        return state

    def unchanged(self, before: dict[str, str], new: tuple[str, ...] = ()) -> None:
        """Every file that was there is there, byte for byte; only ``new`` files appeared."""
        after = self.snapshot()
        lost = {k for k, v in before.items() if after.get(k) != v}
        assert not lost, f"changed or lost: {sorted(lost)}"
        appeared = sorted(set(after) - set(before))
        assert appeared == sorted(new), appeared
        assert not [k for k in after if k.endswith(".part")]


def says(text: str, *parts: str) -> None:
    """The message holds every part (problem and way out) and no traceback."""
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    assert "Traceback" not in text


def cli_says(text: str, *parts: str) -> None:
    """As :func:`says`, and phrased for the command line: no Python code as advice."""
    says(text, *parts)
    for python in (
        "=True",
        "rgb=False",
        "image[...",
        "np.",
        "`python -m napari_chromagan",
        "max_pixels=",
    ):
        assert python not in text, f"Python advice {python!r} in a command-line message: {text!r}"


class Cases(dict[str, Callable[[Ctx], None]]):
    """A test module's cases by name; ``add`` is the decorator that registers one."""

    def add(self, fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        if fn.__name__ in self:
            raise ValueError(f"two cases named {fn.__name__}")
        self[fn.__name__] = fn
        return fn


def _run_case(
    fn: Callable[[Ctx], None],
    tmp_path: Path,
    files: dict[str, Path],
    engine: Colorizer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run one case in a fresh folder; unlock the read-only folders it made, even if it fails."""
    locked: list[Path] = []
    ctx = Ctx(tmp_path / "work", files, engine, capsys, monkeypatch, locked)
    ctx.tmp.mkdir()
    try:
        fn(ctx)
    finally:
        for folder in locked:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
            os.chmod(folder, 0o755)


def make_tests(cases: Cases, at_least: int) -> tuple[Callable[..., None], Callable[[], None]]:
    """A test module's two tests, once its ``cases`` are all registered: one parametrised test
    that runs each case (with this module's ``files`` and ``engine`` fixtures, which the module
    takes in by name), and a check that none of the ``at_least`` cases went missing."""

    @pytest.mark.parametrize("name", list(cases))
    def test_bad_input(name, tmp_path, files, engine, capsys, monkeypatch):
        _run_case(cases[name], tmp_path, files, engine, capsys, monkeypatch)

    def test_the_cases_are_all_here():
        assert len(cases) >= at_least, sorted(cases)

    return test_bad_input, test_the_cases_are_all_here


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path
