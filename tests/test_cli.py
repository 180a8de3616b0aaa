"""The ``napari-chromagan`` / ``python -m napari_chromagan`` command line."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_generator
from PIL import Image

from napari_chromagan.cli import main
from napari_chromagan.color.lab import rgb_to_lab
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.errors import CheckpointError
from napari_chromagan.files import imageio
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
H, W = 40, 56


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt", make_generator())


@pytest.fixture(scope="module")
def engine() -> Colorizer:
    return Colorizer(make_generator(), "cpu")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _gray8(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)).save(path)
    return path


def _rgb8(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def _gray16(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(1000, 50000, H * W).reshape(H, W) + _rng(2).normal(0, 500, (H, W))
    Image.fromarray(ramp.astype(np.uint16)).save(path)
    return path


def _stack16(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path, _rng(3).integers(0, 60000, (3, H, W)).astype(np.uint16), photometric="minisblack"
    )
    return path


def _lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(torch.from_numpy(rgb).double() / 255.0, dim=-1)[..., 0].numpy()


def _run(capsys, *args: str | os.PathLike[str]) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _pixels(data: bytes) -> np.ndarray:
    """The pixels of an encoded image file's bytes."""
    return np.asarray(Image.open(io.BytesIO(data)))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(folder.iterdir())
    }


def test_colorize_folder_files_and_stack(tmp_path, capsys, weights, engine):
    folder = tmp_path / "photos"
    sources = {
        "gray_colorized.png": _gray8(folder / "gray.png"),
        "rgb_colorized.png": _rgb8(folder / "nested" / "rgb.png"),
        "deep_colorized.png": _gray16(tmp_path / "deep.png"),
        "stack_colorized.tif": _stack16(tmp_path / "stack.tif"),
    }
    out = tmp_path / "out"
    code, err = _run(
        capsys,
        "colorize",
        folder,
        tmp_path / "deep.png",
        tmp_path / "stack.tif",
        "-o",
        out,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--batch-size",
        "2",
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(sources)
    assert "device: cpu" in err and f"weights: {weights}" in err
    assert f"colourised 4 images into {out} in " in err
    for name, source in sources.items():
        written = imageio.read_image(out / name)
        expected = engine.colorize(imageio.read_image(source), with_class=False)
        spatial = (3, H, W) if name.endswith(".tif") else (H, W)
        assert written.dtype == np.uint8 and written.shape == (*spatial, 3), name
        assert np.abs(_lightness(written) - expected.L).max() < 1.0, name
        assert np.array_equal(written, expected.rgb), name


def test_refuses_to_overwrite_then_skip_or_overwrite(tmp_path, capsys, weights):
    _gray8(tmp_path / "in" / "a.png")
    _rgb8(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    common = ("colorize", tmp_path / "in", "-o", out, "--weights", weights, "--device", "cpu")
    assert _run(capsys, *common)[0] == 0
    before = _snapshot(out)

    code, err = _run(capsys, *common)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("napari-chromagan: error: 2 outputs")
    assert str(out / "a_colorized.png") in err and str(out / "b_colorized.png") in err
    assert "pass --overwrite to replace them or --skip-existing to keep them" in err
    assert "weights:" not in err  # refused before any model was loaded
    assert _snapshot(out) == before

    code, err = _run(capsys, *common, "--skip-existing")
    assert code == 0 and "skipping 2 images" in err
    assert _snapshot(out) == before

    code, err = _run(capsys, *common, "--overwrite")
    assert code == 0 and "colourised 2 images" in err
    after = _snapshot(out)
    assert after.keys() == before.keys()
    for name in (
        after
    ):  # same pixels (not bytes: the provenance date may differ), but a new file renamed into place
        assert np.array_equal(_pixels(after[name][0]), _pixels(before[name][0]))
        assert after[name][2] != before[name][2]


def test_skip_existing_processes_only_new_inputs(tmp_path, capsys, weights):
    _gray8(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    common = ("colorize", tmp_path / "in", "-o", out, "--weights", weights, "--device", "cpu")
    assert _run(capsys, *common)[0] == 0
    _gray8(tmp_path / "in" / "c.png", seed=5)
    code, err = _run(capsys, *common, "--skip-existing")
    assert code == 0
    assert "skipping 1 image whose" in err
    assert "colourised 1 image into" in err and "(1 skipped: output exists)" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_colorized.png", "c_colorized.png"]


def test_no_weights_anywhere(tmp_path, capsys):
    _gray8(tmp_path / "a.png")
    code, err = _run(capsys, "colorize", tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 2
    assert err.startswith("napari-chromagan: error: no ChromaGAN weights found")
    assert "import-weights" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_corrupt_image_among_good_ones(tmp_path, capsys, weights):
    _gray8(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _rgb8(tmp_path / "in" / "z.png")
    out = tmp_path / "out"
    code, err = _run(capsys, "colorize", tmp_path / "in", "-o", out, "--weights", weights)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_colorized.png", "z_colorized.png"]
    assert f"napari-chromagan: error: {tmp_path / 'in' / 'broken.png'}: cannot read image" in err
    assert "colourised 2 images" in err
    assert err.rstrip().endswith("napari-chromagan: error: 1 of 3 images failed")
    assert "Traceback" not in err


def test_weights_not_a_checkpoint(tmp_path, capsys):
    _gray8(tmp_path / "a.png")
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bogus)
    code, err = _run(
        capsys, "colorize", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", bogus
    )
    assert code == 2
    assert err == f"napari-chromagan: error: {info.value}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_unavailable_device(tmp_path, capsys, weights):
    _gray8(tmp_path / "a.png")
    code, err = _run(
        capsys,
        "colorize",
        tmp_path / "a.png",
        "-o",
        tmp_path / "out",
        "--weights",
        weights,
        "--device",
        "cuda:7",
    )
    assert code == 2
    assert err.startswith("napari-chromagan: error: device 'cuda:7' is not available")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_stack_in_a_png_named_file_is_written_as_tiff(tmp_path, capsys, weights):
    _stack16(tmp_path / "stack.tif").rename(tmp_path / "frames.png")  # TIFF content, .png name
    out = tmp_path / "out"
    code, err = _run(capsys, "colorize", tmp_path / "frames.png", "-o", out, "--weights", weights)
    assert code == 0, err
    assert "stack of 3 images: writing it as TIFF" in err
    assert [p.name for p in out.iterdir()] == ["frames_colorized.tif"]
    assert imageio.read_image(out / "frames_colorized.tif").shape == (3, H, W, 3)

    # an explicit format that cannot hold a stack is an error for that image
    code, err = _run(
        capsys,
        "colorize",
        tmp_path / "frames.png",
        "-o",
        tmp_path / "o2",
        "--weights",
        weights,
        "--format",
        "png",
    )
    assert code == 1 and "cannot hold; choose --format tiff" in err
    assert not (tmp_path / "o2").exists()


def test_manual_range_and_quiet(tmp_path, capsys, weights, engine):
    source = _gray16(tmp_path / "deep.png")
    out = tmp_path / "out"
    code, err = _run(
        capsys,
        "colorize",
        source,
        "-o",
        out,
        "--weights",
        weights,
        "--range",
        "0",
        "65535",
        "--format",
        "tiff",
        "--quiet",
    )
    assert code == 0 and err == ""
    written = imageio.read_image(out / "deep_colorized.tif")
    expected = engine.colorize(imageio.read_image(source), value_range=(0, 65535), with_class=False)
    assert expected.normalization.mode == "manual"
    assert np.array_equal(written, expected.rgb)


def test_precision_and_cuda_graphs_reach_the_engine(tmp_path, capsys, weights, monkeypatch):
    """--cuda-graphs on the CPU is ignored with a note (nothing is compiled for nothing); with
    --compile it compiles without graphs; --precision bf16 gives the bf16 engine's output."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)
    source = _gray16(tmp_path / "deep.png")
    out = tmp_path / "out"
    code, err = _run(
        capsys,
        "colorize",
        source,
        "-o",
        out,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--cuda-graphs",
    )
    assert code == 0, err
    assert compiled == []
    assert "--cuda-graphs does nothing on cpu" in err and "add --compile" in err
    code, err = _run(
        capsys,
        "colorize",
        source,
        "-o",
        out,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--cuda-graphs",
        "--compile",
        "--overwrite",
    )
    assert code == 0, err
    assert compiled == [{"dynamic": False}]  # no mode="reduce-overhead" without CUDA
    assert "--compile on cpu" in err and "5-20 s" in err
    bf16 = Colorizer(make_generator(), "cpu", precision="bf16")
    expected = bf16.colorize(imageio.read_image(source), with_class=False)
    assert np.array_equal(imageio.read_image(out / "deep_colorized.png"), expected.rgb)
    fp32 = Colorizer(make_generator(), "cpu", precision="fp32").colorize(
        imageio.read_image(source), with_class=False
    )
    assert not np.array_equal(expected.rgb, fp32.rgb)  # the flag made a difference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "required: COMMAND"),
        (["colorize", "{a}"], "required: -o"),
        (["colorize", "{a}", "-o", "{out}", "--normalization", "manual"], "needs --range"),
        (["colorize", "{a}", "-o", "{out}", "--range", "5", "1"], "LOW < HIGH"),
        (
            ["colorize", "{a}", "-o", "{out}", "--range", "0", "1", "--normalization", "dtype"],
            "--range applies to --normalization manual",
        ),
        (["colorize", "{a}", "-o", "{out}", "--overwrite", "--skip-existing"], "not allowed"),
        (["colorize", "{a}", "-o", "{out}", "--batch-size", "0"], "must be at least 1"),
        (["colorize", "{a}", "-o", "{out}", "--format", "gif"], "invalid choice"),
        (["colorize", "{a}", "-o", "{out}", "--precision", "fp16"], "invalid choice"),
        (["colorize", "{tmp}/missing.png", "-o", "{out}"], "missing.png: no such file"),
        (["colorize", "{tmp}/empty", "-o", "{out}"], "no images found"),
        (["colorize", "{a}", "-o", "{a}"], "is not a folder"),
    ],
)
def test_usage_errors(tmp_path, capsys, args, message):
    a = _gray8(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    argv = [s.format(a=a, out=out, tmp=tmp_path) for s in args]
    code, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_keyboard_interrupt(tmp_path, capsys, weights, monkeypatch):
    _gray8(tmp_path / "a.png")

    def interrupted(path, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "read_image", interrupted)
    code, err = _run(
        capsys, "colorize", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", weights
    )
    assert code == 130
    assert "interrupted after 0 of 1 image of this run" in err and "--resume" in err
    assert not (tmp_path / "out").exists()


def test_previous_outputs_in_the_input_folder_are_left_alone(tmp_path, capsys, weights):
    folder = tmp_path / "pics"
    _gray8(folder / "a.png")
    common = ("colorize", folder, "-o", folder, "--weights", weights)
    assert _run(capsys, *common)[0] == 0
    first = imageio.read_image(folder / "a_colorized.png")
    code, err = _run(capsys, *common, "--overwrite")
    assert code == 0
    assert "ignoring 1 input that would be overwritten" in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_colorized.png"]
    assert np.array_equal(
        imageio.read_image(folder / "a_colorized.png"), first
    )  # not colourised twice
