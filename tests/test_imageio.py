"""Tests of napari_chromagan.files.imageio: finding, reading, naming and writing image files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_chromagan.errors import UnsupportedImageError
from napari_chromagan.files import imageio
from napari_chromagan.files.imageio import (
    IMAGE_SUFFIXES,
    collect_inputs,
    output_path,
    output_paths,
    read_image,
    write_image,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _rgb(rng: np.random.Generator, shape: tuple[int, ...] = (12, 10, 3)) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _touch_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 3)).save(path, format="PNG")
    return path


# --- collect_inputs ---------------------------------------------------------------------------


def test_suffixes() -> None:
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"} == IMAGE_SUFFIXES


def test_collect_inputs_nested_folder(tmp_path: Path) -> None:
    root = tmp_path / "in"
    b = _touch_png(root / "b.PNG")
    a = _touch_png(root / "a.png")
    deep = _touch_png(root / "sub" / "deeper" / "c.TiFf")
    jpeg = _touch_png(root / "sub" / "d.JPEG")
    _touch_png(root / ".hidden.png")
    _touch_png(root / ".cache" / "e.png")
    (root / "notes.txt").write_text("not an image")
    single = _touch_png(tmp_path / "single.bmp")
    extra = tmp_path / "extra.dat"  # files given explicitly are taken whatever their suffix
    extra.write_bytes(b"x")

    found = collect_inputs([single, root, str(a), extra, single])

    assert found == [single, a, b, jpeg, deep, extra]  # sorted by path components


def test_collect_inputs_same_file_spelt_twice(tmp_path: Path, monkeypatch) -> None:
    _touch_png(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    assert collect_inputs(["x.png", "./x.png", tmp_path / "x.png"]) == [Path("x.png")]


def test_collect_inputs_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        collect_inputs([missing])


def test_collect_inputs_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"no images found in .*; accepted: .*\.png"):
        collect_inputs([tmp_path])


# --- read_image -------------------------------------------------------------------------------


def test_read_gray8_png(tmp_path: Path, rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, size=(9, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, gray)


def test_read_gray16_png(tmp_path: Path, rng: np.random.Generator) -> None:
    gray = rng.integers(0, 65536, size=(9, 7), dtype=np.uint16)
    image = Image.fromarray(gray)
    assert image.mode == "I;16"
    image.save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, gray)


def test_read_rgb_jpeg(tmp_path: Path) -> None:
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = np.linspace(0, 255, 24, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (16, 24, 3)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_read_rgba_png(tmp_path: Path, rng: np.random.Generator) -> None:
    rgba = _rgb(rng, (8, 6, 4))
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba)


def test_read_palette_png(tmp_path: Path) -> None:
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    index = np.array([[0, 1, 2, 1], [2, 2, 0, 0]], np.uint8)
    image = Image.new("P", (4, 2))
    image.putpalette(palette.ravel().tolist())
    image.putdata(index.ravel().tolist())
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, palette[index])


def test_read_bilevel_and_gray_alpha(tmp_path: Path) -> None:
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), bits * np.uint8(255))

    la = np.stack([np.full((3, 5), 77, np.uint8), np.full((3, 5), 9, np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), la[..., 0])


def test_read_lossless_webp_and_bmp(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = _rgb(rng)
    Image.fromarray(rgb).save(tmp_path / "w.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "w.webp"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp"), rgb)


@pytest.mark.parametrize("metadata", [{}, None], ids=["shaped", "plain"])
def test_read_multipage_uint16_tiff(tmp_path: Path, rng: np.random.Generator, metadata) -> None:
    stack = rng.integers(0, 65536, size=(5, 32, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, metadata=metadata)
    out = read_image(tmp_path / "s.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, stack)


def test_read_float32_tiff(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.normal(size=(11, 13)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.TIFF", data)
    out = read_image(tmp_path / "f.TIFF")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data)


def test_read_honours_exif_orientation(tmp_path: Path) -> None:
    stored = np.full((20, 40, 3), 230, np.uint8)  # H=20, W=40; left half dark
    stored[:, :20] = 20
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() < 60 < 180 < out[20:].mean()  # the left side is now on top


def test_read_content_not_suffix_decides(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = _rgb(rng)
    Image.fromarray(rgb).save(tmp_path / "really_a_png.tif", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "really_a_png.tif"), rgb)


def _truncated_png(path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(_rgb(rng, (64, 64, 3))).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("empty.png", lambda p, rng: p.write_bytes(b"")),
        ("cut.png", _truncated_png),
        ("text.jpg", lambda p, rng: p.write_text("hello, I am not a JPEG\n")),
        ("bad.tif", lambda p, rng: p.write_bytes(b"II*\x00" + b"\xff" * 20)),
    ],
    ids=["empty", "truncated", "text", "corrupt-tiff"],
)
def test_read_bad_files(tmp_path: Path, rng: np.random.Generator, name: str, make) -> None:
    path = tmp_path / name
    make(path, rng)
    with pytest.raises(UnsupportedImageError, match=re.escape(f"{path}: cannot read image")):
        read_image(path)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "gone.png")


# --- output naming ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix", "expected"),
    [
        ("x.png", None, "x_colorized.png"),
        ("x.TIFF", None, "x_colorized.tif"),
        ("x.tif", None, "x_colorized.tif"),
        ("x.jpeg", None, "x_colorized.jpg"),
        ("x.JPG", None, "x_colorized.jpg"),
        ("x.bmp", None, "x_colorized.png"),
        ("x.webp", None, "x_colorized.png"),
        ("x.tif", "png", "x_colorized.png"),
        ("x.png", ".PNG", "x_colorized.png"),
        ("x.png", "jpeg", "x_colorized.jpg"),
        ("x.png", "jpg", "x_colorized.jpg"),
        ("x.png", "tif", "x_colorized.tif"),
        ("x.png", "tiff", "x_colorized.tif"),
        ("x.png", "webp", "x_colorized.webp"),
    ],
)
def test_output_path(tmp_path: Path, name: str, suffix: str | None, expected: str) -> None:
    assert output_path(Path("in") / name, tmp_path, suffix) == tmp_path / expected


def test_output_path_tag_and_bad_suffix(tmp_path: Path) -> None:
    assert output_path(Path("a.b.png"), tmp_path, tag="") == tmp_path / "a.b.png"
    with pytest.raises(ValueError, match="gif"):
        output_path(Path("x.png"), tmp_path, "gif")


def test_output_paths_collisions(tmp_path: Path) -> None:
    root = tmp_path / "in"
    inputs = [
        root / "a" / "x.png",
        root / "y.png",
        root / "b" / "x.png",
        root / "b" / "c" / "x.jpg",
    ]
    out = tmp_path / "out"

    named = output_paths(inputs, out, suffix="png", roots=[root])

    assert [p.name for p in named] == [
        "a__x_colorized.png",
        "y_colorized.png",
        "b__x_colorized.png",
        "b__c__x_colorized.png",
    ]
    assert all(p.parent == out for p in named)
    assert output_paths(inputs, out, suffix="png", roots=[root]) == named  # deterministic
    assert output_paths(inputs, out, suffix="png") == named  # common folder as the root


def test_output_paths_no_collision_keeps_plain_names(tmp_path: Path) -> None:
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg"]
    assert [p.name for p in output_paths(inputs, tmp_path)] == [
        "x_colorized.png",
        "x_colorized.jpg",
    ]


def test_output_paths_still_equal_get_numbered(tmp_path: Path) -> None:
    inputs = [tmp_path / "X.png", tmp_path / "x.tif", tmp_path / "x.bmp"]
    names = [p.name for p in output_paths(inputs, tmp_path, suffix="png")]
    assert names == ["X_colorized.png", "x_colorized_2.png", "x_colorized_3.png"]
    assert len({n.casefold() for n in names}) == 3


# --- write_image ------------------------------------------------------------------------------


def test_write_png_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = _rgb(rng)
    target = tmp_path / "new" / "dir" / "o.png"
    write_image(target, rgb)
    np.testing.assert_array_equal(read_image(target), rgb)
    assert os.listdir(target.parent) == ["o.png"]


def test_write_jpeg_and_webp(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = np.repeat(np.linspace(0, 255, 30, dtype=np.uint8)[None, :, None], 20, axis=0)
    rgb = np.repeat(rgb, 3, axis=2)
    for name in ("o.jpg", "o.webp"):
        write_image(tmp_path / name, rgb, quality=90)
        out = read_image(tmp_path / name)
        assert out.shape == (20, 30, 3)
        assert np.abs(out.astype(int) - rgb).mean() < 4


def test_write_tiff_stack_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    stack = _rgb(rng, (3, 16, 20, 3))
    write_image(tmp_path / "s.tif", stack)
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif"), stack)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert len(tif.pages) == 3
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB


def test_write_refuses_to_overwrite(tmp_path: Path, rng: np.random.Generator) -> None:
    target = tmp_path / "o.png"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_image(target, _rgb(rng))
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["o.png"]

    rgb = _rgb(rng)
    write_image(target, rgb, overwrite=True)
    np.testing.assert_array_equal(read_image(target), rgb)


def test_write_stack_to_png_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(UnsupportedImageError, match="--format tiff"):
        write_image(tmp_path / "s.png", _rgb(rng, (2, 8, 8, 3)))
    assert not (tmp_path / "s.png").exists()
    write_image(tmp_path / "one.png", _rgb(rng, (1, 8, 8, 3)))  # a single-image "stack" is fine
    assert read_image(tmp_path / "one.png").shape == (8, 8, 3)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint16), np.zeros((0, 8, 3), np.uint8)],
    ids=["gray", "uint16", "empty"],
)
def test_write_rejects_non_rgb(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(UnsupportedImageError):
        write_image(tmp_path / "o.png", bad)


def test_write_unknown_suffix(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match=r"\.gif"):
        write_image(tmp_path / "o.gif", _rgb(rng))


@pytest.mark.parametrize("name", ["o.png", "o.tif"])
def test_write_failure_leaves_target_and_no_temp(
    tmp_path: Path, rng: np.random.Generator, monkeypatch, name: str
) -> None:
    def broken(fh, *args, **kwargs):
        fh.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", lambda self, fh, **kw: broken(fh))
    monkeypatch.setattr(imageio.tifffile, "imwrite", broken)
    target = tmp_path / name
    target.write_bytes(b"previous result")

    with pytest.raises(OSError, match="disk full"):
        write_image(target, _rgb(rng), overwrite=True)

    assert target.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == [name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_write_gets_usual_permissions(tmp_path: Path, rng: np.random.Generator) -> None:
    (tmp_path / "plain").write_bytes(b"")
    write_image(tmp_path / "o.png", _rgb(rng))
    assert (tmp_path / "o.png").stat().st_mode == (tmp_path / "plain").stat().st_mode
