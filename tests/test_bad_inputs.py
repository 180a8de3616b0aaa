"""Bad inputs and faults across the three ways in: the ``napari-chromagan`` command line, the
Python API, and ``python -m training``.

Each case asserts the exit code (or the exception type), that the message names the problem
and the way out (and, for the command lines, has no traceback and no Python advice), and that
nothing was lost, half-written or overwritten: every file that was there before is unchanged,
no temporary ``.part`` file is left, and no output appears unless the case says which.

The cases are plain functions registered in ``CASES`` and run by one parametrised test, so
that ``pytest -k`` picks one by name; the count is checked at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import warnings
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
from napari_chromagan.errors import (
    CheckpointError,
    MissingPixelsWarning,
    OutputError,
    UnsupportedImageError,
    WeightsNotFoundError,
)
from napari_chromagan.files import imageio
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint
from napari_chromagan.weights.lookup import resolve_weights

H, W = 24, 32


# --------------------------------------------------------------------------- fixtures and helpers


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


CASES: dict[str, Callable[[Ctx], None]] = {}


def case(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    CASES[fn.__name__] = fn
    return fn


def _png_header_only(path: Path, width: int, height: int) -> Path:
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


# --------------------------------------------------------------------------- the command line


@case
def cli_two_channel_tiff_is_not_a_stack_of_narrow_images(ctx: Ctx) -> None:
    source = ctx.tiff("two.tif", np.zeros((H, W, 2), np.uint16))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(err, "two.tif", "looks like 2 channels", "--channel N", "0 to 1")
    ctx.unchanged(before)


@case
def cli_five_channel_tiff_is_refused(ctx: Ctx) -> None:
    source = ctx.tiff("five.tif", np.zeros((H, W, 5), np.float32))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(err, "five.tif", "(24, 32, 5)", "looks like 5 channels", "--channel N")
    ctx.unchanged(before)


@case
def cli_channel_picks_one_channel(ctx: Ctx) -> None:
    planes = np.random.default_rng(1).integers(0, 60000, (H, W, 2)).astype(np.uint16)
    source = ctx.tiff("two.tif", planes)
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--channel", "1"
    )
    assert code == 0, err
    written = imageio.read_image(ctx.tmp / "out" / "two_colorized.tif")
    assert written.shape == (H, W, 3)
    assert np.array_equal(written, ctx.engine.colorize(planes[..., 1], with_class=False).rgb)
    ctx.unchanged(before, new=("out/two_colorized.tif",))


@case
def cli_channel_beyond_the_last_is_refused(ctx: Ctx) -> None:
    source = ctx.tiff("two.tif", np.zeros((H, W, 2), np.uint8))
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--channel", "2"
    )
    assert code == 1
    cli_says(err, "has 2 channels", "--channel 2 does not exist", "choose --channel 0 to 1")
    ctx.unchanged(before)


@case
def cli_one_channel_tiff_is_one_image(ctx: Ctx) -> None:
    plane = np.random.default_rng(2).integers(0, 256, (H, W, 1)).astype(np.uint8)
    source = ctx.tiff("one.tif", plane)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 0, err
    written = imageio.read_image(ctx.tmp / "out" / "one_colorized.tif")
    assert written.shape == (H, W, 3)  # not a stack of 24 images 32 x 1 pixels
    assert np.array_equal(written, ctx.engine.colorize(plane[..., 0], with_class=False).rgb)
    ctx.unchanged(before, new=("out/one_colorized.tif",))


@case
def cli_weights_holding_nan(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.files["nan"])
    assert code == 2
    cli_says(err, str(ctx.files["nan"]), "NaN or inf", "decoder", "Use another checkpoint")
    ctx.unchanged(before)


@case
def cli_weights_whose_network_gives_nan(ctx: Ctx) -> None:
    ctx.gray("a.png")
    ctx.gray("b.png", seed=1)
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        ctx.tmp / "a.png",
        ctx.tmp / "b.png",
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.files["nan_output"],
    )
    assert code == 2  # stops at the first image: the others would fail the same way
    cli_says(err, "not finite", str(ctx.files["nan_output"]), "Use other weights")
    assert err.count("not finite") == 1
    ctx.unchanged(before)


@case
def cli_all_nan_image_is_said_and_counted(ctx: Ctx) -> None:
    source = ctx.tiff("blank.tif", np.full((H, W), np.nan, np.float32))
    ctx.gray("ok.png")
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, ctx.tmp / "ok.png", "-o", ctx.tmp / "out", "--weights", ctx.weights
    )
    assert code == 0, err
    says(
        err,
        "warning:",
        "blank.tif",
        "every pixel of the image is NaN or inf",
        "uniform gray",
        "colourised 2 images",
        "1 had no finite pixel",
    )
    ctx.unchanged(before, new=("out/blank_colorized.tif", "out/ok_colorized.png"))


@case
def cli_read_only_output_folder_fails_before_the_work(ctx: Ctx) -> None:
    source = ctx.gray()
    locked = ctx.readonly()
    ctx.forbid(
        Colorizer, "from_checkpoint", "the weights were loaded although nothing can be written"
    )
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", locked, "--weights", ctx.weights)
    assert code == 2
    cli_says(err, f"cannot write into the output folder {locked}", "choose another folder with -o")
    ctx.unchanged(before)


@case
def cli_output_folder_below_a_file(ctx: Ctx) -> None:
    source = ctx.gray()
    blocker = ctx.tmp / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", blocker / "out", "--weights", ctx.weights)
    assert code == 2
    cli_says(err, f"{blocker} is a file, not a folder", "choose another folder with -o")
    ctx.unchanged(before)


@case
def cli_weights_given_a_folder(ctx: Ctx) -> None:
    source = ctx.gray()
    folder = ctx.tmp / "models"
    folder.mkdir()
    shutil.copy(ctx.weights, folder / "mine.pt")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", folder)
    assert code == 2
    cli_says(
        err,
        f"{folder} is a folder, not a weights file",
        "give the path of a .pt checkpoint file",
        "mine.pt",
    )
    assert "does not exist" not in err
    ctx.unchanged(before)


@case
def cli_ctrl_c_says_what_was_done_and_how_to_continue(ctx: Ctx) -> None:
    sources = [ctx.gray(f"{n}.png", seed=i) for i, n in enumerate("abc")]
    out = ctx.tmp / "out"
    real = imageio.write_image
    calls = []

    def write_then_interrupt(path, rgb, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, rgb, **kwargs)

    ctx.monkeypatch.setattr(imageio, "write_image", write_then_interrupt)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", *sources, "-o", out, "--weights", ctx.weights)
    assert code == 130
    cli_says(err, "interrupted after 1 of 3 images", f"1 output is complete in {out}", "--resume")
    ctx.unchanged(before, new=("out/a_colorized.png",))
    # and --resume does the rest, leaving the finished output alone
    ctx.monkeypatch.setattr(imageio, "write_image", real)
    done = (out / "a_colorized.png").read_bytes()
    code, err = ctx.cli("colorize", *sources, "-o", out, "--weights", ctx.weights, "--resume")
    assert code == 0, err
    assert "skipping 1 image whose output already exists" in err
    assert (out / "a_colorized.png").read_bytes() == done
    assert sorted(p.name for p in out.iterdir()) == [
        "a_colorized.png",
        "b_colorized.png",
        "c_colorized.png",
    ]


@case
def cli_decompression_bomb_is_explained_with_its_override(ctx: Ctx) -> None:
    bomb = _png_header_only(ctx.tmp / "huge.png", 20000, 10000)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", bomb, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(
        err,
        "huge.png",
        "20000 x 10000 = 200,000,000 pixels",
        "decompression bombs",
        "--max-pixels 200000000",
        "--max-pixels 0",
    )
    ctx.unchanged(before)


@case
def cli_max_pixels_limit_and_override(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--max-pixels", "100"
    )
    assert code == 1
    cli_says(err, f"{H * W:,} pixels", "limit of 100", f"--max-pixels {H * W}")
    ctx.unchanged(before)
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--max-pixels", "0"
    )
    assert code == 0, err
    ctx.unchanged(before, new=("out/a_colorized.png",))


@case
def cli_negative_max_pixels(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--max-pixels", "-5")
    assert code == 2
    cli_says(err, "--max-pixels", "must be 0 or more")
    ctx.unchanged(before)


@case
def cli_channel_not_a_number(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--channel", "red")
    assert code == 2
    cli_says(err, "--channel", "expected a whole number, got 'red'")
    ctx.unchanged(before)


@case
def cli_cuda_graphs_without_cuda_says_so_and_compiles_nothing(ctx: Ctx) -> None:
    compiled = []
    ctx.monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        source,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
        "--device",
        "cpu",
        "--cuda-graphs",
    )
    assert code == 0, err
    cli_says(err, "--cuda-graphs does nothing on cpu", "CUDA graphs need a CUDA GPU", "Ignored")
    assert compiled == []
    ctx.unchanged(before, new=("out/a_colorized.png",))


@case
def cli_compile_on_the_cpu_warns_before_compiling(ctx: Ctx) -> None:
    order = []
    ctx.monkeypatch.setattr(
        torch, "compile", lambda module, **kw: order.append("compile") or module
    )
    real = Colorizer.__init__

    def init(self, *args, **kwargs):
        order.append(
            "note said" if "--compile on cpu" in ctx.capsys.readouterr().err else "no note"
        )
        real(self, *args, **kwargs)

    ctx.monkeypatch.setattr(Colorizer, "__init__", init)
    source = ctx.gray()
    code, _ = ctx.cli(
        "colorize",
        source,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
        "--device",
        "cpu",
        "--compile",
    )
    assert code == 0
    assert order == ["note said", "compile"]


@case
def cli_bool_tiff_is_read_as_black_and_white(ctx: Ctx) -> None:
    mask = np.random.default_rng(3).random((H, W)) > 0.5
    source = ctx.tiff("mask.tif", mask)
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 0, err
    expected = ctx.engine.colorize(mask.astype(np.uint8) * 255, with_class=False).rgb
    assert np.array_equal(imageio.read_image(ctx.tmp / "out" / "mask_colorized.tif"), expected)
    ctx.unchanged(before, new=("out/mask_colorized.tif",))


@case
def cli_complex_tiff_advice_is_for_the_command_line(ctx: Ctx) -> None:
    source = ctx.tiff("fft.tif", np.ones((H, W), np.complex64))
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 1
    cli_says(
        err,
        "fft.tif",
        "cannot colourise complex pixel values",
        "real-valued pixels",
        "its magnitude",
    )
    ctx.unchanged(before)


@case
def cli_existing_output_is_never_replaced_silently(ctx: Ctx) -> None:
    source = ctx.gray()
    (ctx.tmp / "out").mkdir()
    (ctx.tmp / "out" / "a_colorized.png").write_bytes(b"an earlier result")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights)
    assert code == 2
    cli_says(err, "already exists", "--overwrite", "--skip-existing")
    ctx.unchanged(before)


@case
def cli_empty_and_truncated_files_fail_alone(ctx: Ctx) -> None:
    (ctx.tmp / "empty.png").write_bytes(b"")
    good = ctx.gray("good.png")
    (ctx.tmp / "cut.png").write_bytes(good.read_bytes()[:60])
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize",
        ctx.tmp / "empty.png",
        ctx.tmp / "cut.png",
        good,
        "-o",
        ctx.tmp / "out",
        "--weights",
        ctx.weights,
    )
    assert code == 1
    cli_says(
        err,
        "empty.png: cannot read image (the file is empty)",
        "cut.png: cannot read image",
        "expected a complete PNG",
        "2 of 3 images failed",
    )
    ctx.unchanged(before, new=("out/good_colorized.png",))


@case
def cli_missing_input(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", ctx.tmp / "nope.png", "-o", ctx.tmp / "out")
    assert code == 2
    cli_says(err, "nope.png: no such file or folder")
    ctx.unchanged(before)


@case
def cli_device_this_machine_lacks(ctx: Ctx) -> None:
    source = ctx.gray()
    before = ctx.snapshot()
    code, err = ctx.cli(
        "colorize", source, "-o", ctx.tmp / "out", "--weights", ctx.weights, "--device", "cuda:7"
    )
    assert code == 2
    cli_says(err, "cuda:7", "not available", "'auto' or 'cpu'")
    ctx.unchanged(before)


@case
def cli_weights_not_a_checkpoint(ctx: Ctx) -> None:
    source = ctx.gray()
    junk = ctx.tmp / "junk.pt"
    junk.write_bytes(b"<html>not found</html>")
    before = ctx.snapshot()
    code, err = ctx.cli("colorize", source, "-o", ctx.tmp / "out", "--weights", junk)
    assert code == 2
    cli_says(err, "junk.pt is not a readable PyTorch file", "Download or export it again")
    ctx.unchanged(before)


@case
def cli_import_weights_into_a_read_only_folder_fails_before_reading(ctx: Ctx) -> None:
    locked = ctx.readonly()
    import napari_chromagan.weights.keras_import as keras_import

    ctx.forbid(
        keras_import,
        "import_keras_weights",
        "the .h5 was read although the result cannot be written",
    )
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", locked / "model.pt")
    assert code == 2
    cli_says(
        err, f"cannot write into the output folder {locked}", "write the checkpoint somewhere else"
    )
    ctx.unchanged(before)


@case
def cli_import_weights_over_an_existing_file(ctx: Ctx) -> None:
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (ctx.tmp / "model.pt").write_bytes(b"an earlier checkpoint")
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "model.pt already exists", "pass --overwrite", "-o")
    ctx.unchanged(before)


@case
def cli_import_weights_into_a_folder_name(ctx: Ctx) -> None:
    (ctx.tmp / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (ctx.tmp / "models").mkdir()
    before = ctx.snapshot()
    code, err = ctx.cli("import-weights", ctx.tmp / "model.h5", "-o", ctx.tmp / "models")
    assert code == 2
    cli_says(
        err, "models is a folder", "give the checkpoint file to write", "chromagan-imagenet.pt"
    )
    ctx.unchanged(before)


@case
def cli_screenshot_that_exists(ctx: Ctx) -> None:
    shot = ctx.tmp / "shot.png"
    shot.write_bytes(b"an earlier screenshot")
    before = ctx.snapshot()
    code, err = ctx.cli("napari", "--screenshot", shot)
    assert code == 2
    cli_says(err, "shot.png exists", "remove it or choose another name")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the Python API


@case
def api_two_channel_array_is_refused(ctx: Ctx) -> None:
    image = np.random.default_rng(4).random((H, W, 2)).astype(np.float32)
    kept = image.copy()
    with pytest.raises(UnsupportedImageError) as info:
        ctx.engine.colorize(image)
    says(str(info.value), "(24, 32, 2)", "looks like 2 channels", "image[..., 0]", "rgb=False")
    assert np.array_equal(image, kept)


@case
def api_five_channel_dask_array_is_refused(ctx: Ctx) -> None:
    da = pytest.importorskip("dask.array")
    with pytest.raises(UnsupportedImageError) as info:
        ctx.engine.colorize(da.zeros((3, H, W, 5), dtype=np.uint16))
    says(str(info.value), "(3, 24, 32, 5)", "5 channels", "rgb=False if it really is a stack")


@case
def api_rgb_false_reads_a_narrow_last_axis_as_the_width(ctx: Ctx) -> None:
    stack = np.random.default_rng(5).integers(0, 256, (3, H, 2)).astype(np.uint8)
    result = ctx.engine.colorize(stack, rgb=False, with_class=False)
    assert result.rgb.shape == (3, H, 2, 3)  # what the caller said: 3 images 24 x 2 pixels


@case
def api_single_channel_axis_is_dropped(ctx: Ctx) -> None:
    image = np.random.default_rng(6).integers(0, 256, (H, W, 1)).astype(np.uint8)
    result = ctx.engine.colorize(image)
    expected = ctx.engine.colorize(image[..., 0])
    assert result.rgb.shape == (H, W, 3) and result.L.shape == (H, W)
    assert np.array_equal(result.rgb, expected.rgb)
    assert result.class_probs.shape == expected.class_probs.shape == (1000,)


@case
def api_load_checkpoint_with_nan(ctx: Ctx) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ctx.files["nan"])
    says(
        str(info.value),
        str(ctx.files["nan"]),
        "1 weight tensor holds NaN or inf",
        "decoder.",
        "earlier step",
    )


@case
def api_network_output_that_is_not_finite(ctx: Ctx) -> None:
    colorizer = Colorizer.from_checkpoint(ctx.files["nan_output"], "cpu")
    with pytest.raises(CheckpointError) as info:
        colorizer.colorize(np.zeros((H, W), np.uint8))
    says(str(info.value), "not finite", str(ctx.files["nan_output"]), "Use other weights")


@case
def api_all_nan_image_warns(ctx: Ctx) -> None:
    image = np.full((H, W), np.inf, np.float32)
    with pytest.warns(MissingPixelsWarning, match="every pixel of the image is NaN or inf"):
        result = ctx.engine.colorize(image)
    assert (result.rgb == result.rgb[0, 0]).all() and result.missing.all()


@case
def api_some_planes_all_nan_warns_naming_them(ctx: Ctx) -> None:
    stack = np.random.default_rng(7).random((4, H, W)).astype(np.float32)
    stack[2] = np.nan
    with pytest.warns(
        MissingPixelsWarning, match=r"1 of 4 planes \(index 2\) have no finite pixel"
    ):
        ctx.engine.colorize(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingPixelsWarning)
        stack[2, 0, 0] = 0.5  # one finite pixel: not blank, no warning
        ctx.engine.colorize(stack)


@case
def api_batch_size_not_a_number(ctx: Ctx) -> None:
    with pytest.raises(TypeError) as info:
        ctx.engine.colorize(np.zeros((H, W), np.uint8), batch_size="abc")
    says(str(info.value), "batch_size must be a whole number >= 1", "'abc' (str)", "batch_size=8")


@case
def api_batch_size_zero(ctx: Ctx) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        ctx.engine.colorize(np.zeros((H, W), np.uint8), batch_size=0)


@case
def api_colorize_layer_batch_size_checked_before_loading(ctx: Ctx) -> None:
    from napari.layers import Image as ImageLayer

    from napari_chromagan import colorize_layer

    ctx.monkeypatch.setattr(
        "napari_chromagan.napari.colorizer_cache.load_colorizer",
        lambda *a, **k: pytest.fail("weights were loaded before the arguments were checked"),
    )
    layer = ImageLayer(np.zeros((H, W), np.uint8), name="gray")
    with pytest.raises(TypeError) as info:
        colorize_layer(layer, batch_size="abc")
    says(str(info.value), "batch_size must be a whole number", "'abc'")
    assert layer.data.sum() == 0 and layer.name == "gray"


@case
def api_load_checkpoint_of_a_folder(ctx: Ctx) -> None:
    folder = ctx.tmp / "models"
    folder.mkdir()
    shutil.copy(ctx.weights, folder / "a.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    says(
        str(info.value), "is a folder, not a weights file", "a .pt checkpoint file inside it (a.pt)"
    )


@case
def api_resolve_weights_of_a_folder(ctx: Ctx) -> None:
    (ctx.tmp / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(ctx.tmp / "empty")
    says(
        str(info.value),
        "empty is a folder, not a weights file",
        "give the path of a .pt checkpoint file",
    )
    assert "does not exist" not in str(info.value)


@case
def api_weights_variable_naming_a_folder(ctx: Ctx) -> None:
    ctx.monkeypatch.setenv("NAPARI_CHROMAGAN_WEIGHTS", str(ctx.tmp))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights()
    says(str(info.value), "$NAPARI_CHROMAGAN_WEIGHTS points to", "a folder, not a weights file")


@case
def api_read_image_refuses_a_bomb_with_its_override(ctx: Ctx) -> None:
    bomb = _png_header_only(ctx.tmp / "huge.png", 30000, 10000)
    with pytest.raises(UnsupportedImageError) as info:
        imageio.read_image(bomb)
    says(str(info.value), "300,000,000 pixels", "decompression bombs", "max_pixels=300000000")
    assert "--max-pixels 300000000" in info.value.cli_message


@case
def api_import_into_a_read_only_folder_before_reading(ctx: Ctx) -> None:
    from napari_chromagan.weights.keras_import import import_keras_weights_to_checkpoint

    locked = ctx.readonly()
    before = ctx.snapshot()
    with pytest.raises(OutputError) as info:  # not CheckpointError: the .h5 is not even opened
        import_keras_weights_to_checkpoint(ctx.tmp / "absent.h5", locked / "out.pt")
    says(str(info.value), f"cannot write into the output folder {locked}", "somewhere else")
    ctx.unchanged(before)


@case
def api_evaluate_out_is_a_file_before_loading(ctx: Ctx) -> None:
    from training.evaluate import evaluate

    out = ctx.tmp / "summary"
    out.write_text("notes\n")
    before = ctx.snapshot()
    with pytest.raises(OutputError) as info:  # checked before the (absent) weights are looked for
        evaluate(ctx.tmp / "absent.pt", ctx.files["images"], out=out, progress=False)
    says(str(info.value), f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- python -m training


@case
def train_out_is_a_file(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    out.write_text("not a run folder\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "train", "--data", ctx.files["images"], "--out", out, "--preset", "chromagan-noclass"
    )
    assert code == 2
    cli_says(err, f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


@case
def train_out_is_a_file_when_resuming(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    out.write_text("not a run folder\n")
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(err, "is a file, not a folder")
    ctx.unchanged(before)


@case
def train_out_read_only_fails_before_loading_the_data(ctx: Ctx) -> None:
    import training.train as train_module

    locked = ctx.readonly()
    ctx.forbid(
        train_module, "find_images", "the data was searched although --out cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "train",
        "--data",
        ctx.files["images"],
        "--out",
        locked / "run",
        "--preset",
        "chromagan-noclass",
        "--device",
        "cpu",
    )
    assert code == 2
    cli_says(err, "cannot write into --out", str(locked), "choose another --out folder")
    ctx.unchanged(before)


@case
def train_resume_latest_with_no_run_yet(ctx: Ctx) -> None:
    out = ctx.tmp / "runs" / "mine"
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(err, f"there is no run in {out} yet", "start one with --data DIR --out")
    assert "--data and --out are required" not in err
    assert not out.exists()
    ctx.unchanged(before)


@case
def train_resume_with_the_data_moved(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.json").write_text(
        json.dumps({"data": str(ctx.tmp / "moved"), "out": str(out), "preset": "chromagan-noclass"})
    )
    before = ctx.snapshot()
    code, err = ctx.training("train", "--out", out, "--resume", "latest")
    assert code == 2
    cli_says(
        err, f"data {ctx.tmp / 'moved'} (from {out / 'config.json'}) does not exist", "pass --data"
    )
    ctx.unchanged(before)


@case
def train_data_folder_without_images(ctx: Ctx) -> None:
    (ctx.tmp / "photos").mkdir()
    (ctx.tmp / "photos" / "readme.txt").write_text("no images here\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "train",
        "--data",
        ctx.tmp / "photos",
        "--out",
        ctx.tmp / "run",
        "--preset",
        "chromagan-noclass",
        "--width",
        "0.125",
        "--image-size",
        "64",
        "--device",
        "cpu",
    )
    assert code == 2
    cli_says(err, "--data: no images found in", "point to the folder that holds the images")
    assert not (ctx.tmp / "run").exists() or not any((ctx.tmp / "run").iterdir())
    ctx.unchanged(before)


@case
def evaluate_out_is_a_file(ctx: Ctx) -> None:
    import training.evaluate as evaluate_module

    out = ctx.tmp / "eval"
    out.write_text("an earlier table\n")
    ctx.forbid(
        evaluate_module, "_score_batch", "images were scored although the results cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate", "--weights", ctx.weights, "--data", ctx.files["images"], "--out", out, "-q"
    )
    assert code == 2
    cli_says(err, f"--out {out} is a file, not a folder", "choose a folder")
    ctx.unchanged(before)


@case
def evaluate_out_read_only(ctx: Ctx) -> None:
    import training.evaluate as evaluate_module

    locked = ctx.readonly()
    ctx.forbid(
        evaluate_module, "_score_batch", "images were scored although the results cannot be written"
    )
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate",
        "--weights",
        ctx.weights,
        "--data",
        ctx.files["images"],
        "--out",
        locked / "eval",
        "-q",
    )
    assert code == 2
    cli_says(err, "cannot write into --out", "choose another --out folder")
    ctx.unchanged(before)


@case
def evaluate_weights_given_a_folder(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.training(
        "evaluate", "--weights", ctx.files["images"], "--data", ctx.files["images"], "-q"
    )
    assert code == 2
    cli_says(err, "is a folder, not a weights file", "give the path of a .pt checkpoint file")
    ctx.unchanged(before)


@case
def export_evaluation_that_is_not_json(ctx: Ctx) -> None:
    notes = ctx.tmp / "summary.txt"
    notes.write_text("PSNR 23.4 dB\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "export", ctx.weights, "-o", ctx.tmp / "model.pt", "--evaluation", notes
    )
    assert code == 2
    cli_says(
        err,
        f"--evaluation {notes} is not JSON",
        "line 1 column 1",
        "the summary.json written by `python -m training evaluate",
    )
    ctx.unchanged(before)


@case
def export_evaluation_that_is_a_json_list(ctx: Ctx) -> None:
    listed = ctx.tmp / "summary.json"
    listed.write_text("[1, 2, 3]\n")
    before = ctx.snapshot()
    code, err = ctx.training(
        "export", ctx.weights, "-o", ctx.tmp / "model.pt", "--evaluation", listed
    )
    assert code == 2
    cli_says(err, "holds a JSON list, not a summary", "summary.json written by")
    ctx.unchanged(before)


@case
def export_output_is_a_folder(ctx: Ctx) -> None:
    (ctx.tmp / "models").mkdir()
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", ctx.tmp / "models")
    assert code == 2
    cli_says(err, "is a folder; give the file to write", "model.pt")
    ctx.unchanged(before)


@case
def export_output_in_a_read_only_folder(ctx: Ctx) -> None:
    import training.export as export_module

    locked = ctx.readonly()
    ctx.forbid(
        export_module,
        "load_checkpoint",
        "the checkpoint was loaded although the export cannot be written",
    )
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", locked / "model.pt")
    assert code == 2
    cli_says(err, "cannot write into the output folder", "choose another -o")
    ctx.unchanged(before)


@case
def export_over_an_existing_file(ctx: Ctx) -> None:
    (ctx.tmp / "model.pt").write_bytes(b"an earlier export")
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.weights, "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "already exists", "choose another -o or pass --overwrite")
    ctx.unchanged(before)


@case
def export_checkpoint_holding_nan(ctx: Ctx) -> None:
    before = ctx.snapshot()
    code, err = ctx.training("export", ctx.files["nan"], "-o", ctx.tmp / "model.pt")
    assert code == 2
    cli_says(err, "NaN or inf", "another checkpoint")
    ctx.unchanged(before)


# --------------------------------------------------------------------------- the one test


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, files, engine, capsys, monkeypatch):
    locked: list[Path] = []
    ctx = Ctx(tmp_path / "work", files, engine, capsys, monkeypatch, locked)
    ctx.tmp.mkdir()
    try:
        CASES[name](ctx)
    finally:
        for folder in locked:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
            os.chmod(folder, 0o755)


def test_the_suite_covers_at_least_forty_distinct_cases():
    surfaces = {name.split("_")[0] for name in CASES}
    assert len(CASES) >= 40, len(CASES)
    assert {"cli", "api", "train", "evaluate", "export"} <= surfaces
