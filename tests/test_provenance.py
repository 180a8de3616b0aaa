"""Provenance: every output says it was colourised by machine, with what and how, and reads back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import AUTO_ON_CPU, make_generator
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from napari_chromagan import __version__
from napari_chromagan.cli import main
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.files import imageio, provenance, provenance_record
from napari_chromagan.weights.checkpoint import save_checkpoint

H, W = 40, 56
DTYPE_NORM = {"mode": "dtype", "low": 0.0, "high": 255.0, "percentiles": None}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt", make_generator())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inputs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8)).save(folder / "gray8.png")
    ramp = np.linspace(1000, 50000, H * W).reshape(H, W) + rng.normal(0, 500, (H, W))
    Image.fromarray(ramp.astype(np.uint16)).save(folder / "gray16.png")
    return folder


def _now_ish(date: str) -> bool:
    when = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
    return abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 300


# --------------------------------------------------------------------------- the record


def test_weights_sha256_is_hashlib_s_and_hashed_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(os.urandom(3 << 20))
    calls = []
    real = provenance_record.file_sha256  # the digest the record takes
    monkeypatch.setattr(provenance_record, "file_sha256", lambda p: calls.append(p) or real(p))
    provenance.clear_hash_cache()

    first = [provenance.weights_sha256(path) for _ in range(5)]
    assert first == [_sha256(path)] * 5
    assert len(calls) == 1  # five images, one hash

    path.write_bytes(os.urandom(3 << 20))  # the file is replaced: new content, new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert provenance.weights_sha256(path) == _sha256(path) != first[0]
    assert len(calls) == 2


def test_record_fields_and_json_round_trip(weights):
    record = provenance.make_record(
        weights=weights, precision="bf16", normalization=DTYPE_NORM, device="cpu"
    )
    assert record["software"] == "napari-chromagan" and record["version"] == __version__
    assert record["weights_name"] == "w.pt" and record["weights_sha256"] == _sha256(weights)
    assert record["precision"] == "bf16" and record["device"] == "cpu"
    assert record["normalization"] == DTYPE_NORM
    assert "hints" not in record and _now_ish(record["date"])
    text = provenance.to_json(record)
    assert text.isascii() and provenance.from_json(text) == record
    with pytest.raises(provenance.ProvenanceError, match="not valid JSON"):
        provenance.from_json(text[:-5])
    with pytest.raises(provenance.ProvenanceError, match="not a napari-chromagan"):
        provenance.from_json(json.dumps({"software": "other"}))
    with pytest.raises(provenance.ProvenanceError, match="fp32' or 'bf16"):
        provenance.make_record(weights=None, precision="fp16", normalization=DTYPE_NORM)


def test_record_for_takes_the_precision_the_network_ran_in(tiny_generator):
    from napari_chromagan.engine.normalize import Normalization

    class Result:
        normalization = Normalization("percentile", 3.0, 250.0, (0.5, 99.5))
        weights = None
        device = "cpu"

    fp32 = provenance.record_for(Colorizer(tiny_generator, "cpu", precision="fp32"), Result())
    bf16 = provenance.record_for(Colorizer(tiny_generator, "cpu", precision="bf16"), Result())
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert fp32["normalization"] == {
        "mode": "percentile",
        "low": 3.0,
        "high": 250.0,
        "percentiles": [0.5, 99.5],
    }
    assert fp32["weights_name"] is None and fp32["weights_sha256"] is None


def test_hints_are_recorded_and_large_arrays_stored_as_a_digest():
    mask = np.zeros((300, 400), np.int32)
    mask[10:50, 20:80] = 3
    hints = {
        "coords": np.array([[5.0, 7.0]]),
        "ab": np.array([[40.0, 20.0]], np.float32),
        "mask": mask,
    }
    record = provenance.make_record(
        weights=None, precision="fp32", normalization=DTYPE_NORM, hints=hints
    )
    assert record["hints"]["coords"] == [[5.0, 7.0]] and record["hints"]["ab"] == [[40.0, 20.0]]
    assert record["hints"]["mask"] == {
        "array_sha256": hashlib.sha256(mask.tobytes()).hexdigest(),
        "shape": [300, 400],
        "dtype": "int32",
    }
    assert len(provenance.to_json(record)) < 1000
    # hints applied after the colourisation (a layer's record), and taken off again
    plain = provenance.make_record(weights=None, precision="fp32", normalization=DTYPE_NORM)
    hinted = provenance.with_hints(plain, hints)
    assert hinted["hints"] == record["hints"] and "hints" not in plain
    assert provenance.with_hints(hinted, None) == plain


# --------------------------------------------------------------------------- in each format


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_write_image_stores_the_record_where_the_format_keeps_metadata(tmp_path, weights, ext):
    record = provenance.make_record(
        weights=weights, precision="fp32", normalization=DTYPE_NORM, device="cpu"
    )
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = tmp_path / f"out{ext}"
    imageio.write_image(path, rgb, provenance=record)
    assert provenance.read_provenance(path) == record
    # the pixels are unchanged by the metadata (JPEG and WebP: lossy, but the same as without it)
    plain = tmp_path / f"plain{ext}"
    imageio.write_image(plain, rgb)
    assert np.array_equal(imageio.read_image(path), imageio.read_image(plain))
    assert provenance.read_provenance(plain) is None
    assert b"napari-chromagan" not in plain.read_bytes()


def test_standard_tags_say_who_made_the_file(tmp_path, weights):
    """What other tools show, read with Pillow and tifffile directly (not read_provenance)."""
    record = provenance.make_record(weights=weights, precision="fp32", normalization=DTYPE_NORM)
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    software = f"napari-chromagan {__version__}"
    for ext in (".png", ".jpg", ".webp", ".tif"):
        imageio.write_image(tmp_path / f"a{ext}", rgb, provenance=record)
    with Image.open(tmp_path / "a.png") as png:
        assert png.text["Software"] == software
        assert png.text["Description"] == provenance.STATEMENT
        assert json.loads(png.text["napari-chromagan"])["weights_sha256"] == _sha256(weights)
    for ext in (".jpg", ".webp"):
        with Image.open(tmp_path / f"a{ext}") as image:
            exif = image.getexif()
            assert exif[0x0131] == software and exif[0x010E] == provenance.STATEMENT
    with Image.open(tmp_path / "a.jpg") as jpeg:
        assert json.loads(jpeg.info["comment"])["precision"] == "fp32"
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        page = tif.pages.first
        assert page.software == software
        assert tif.shaped_metadata[0]["napari-chromagan"]["weights_name"] == "w.pt"
        assert page.tags["DateTime"].value == dt.datetime.fromisoformat(
            record["date"].replace("Z", "+00:00")
        ).strftime("%Y:%m:%d %H:%M:%S")


def test_a_jpeg_comment_too_small_for_the_hints_summarises_them(tmp_path):
    hints = {f"stroke{i}": np.arange(4000, dtype=np.float64) + i for i in range(8)}
    record = provenance.make_record(
        weights=None, precision="fp32", normalization=DTYPE_NORM, hints=hints
    )
    assert len(provenance.to_json(record)) > 65_533  # more than a JPEG segment holds
    rgb = np.zeros((H, W, 3), np.uint8)
    imageio.write_image(tmp_path / "a.jpg", rgb, provenance=record)
    imageio.write_image(tmp_path / "a.png", rgb, provenance=record)
    from_jpeg = provenance.read_provenance(tmp_path / "a.jpg")
    assert "do not fit in a JPEG comment" in from_jpeg["hints"]["summarised"]
    full = provenance.to_json(record["hints"])
    assert from_jpeg["hints"]["hints_sha256"] == hashlib.sha256(full.encode()).hexdigest()
    assert {k: v for k, v in from_jpeg.items() if k != "hints"} == {
        k: v for k, v in record.items() if k != "hints"
    }
    assert provenance.read_provenance(tmp_path / "a.png") == record  # PNG text has room


def test_damaged_and_foreign_metadata(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    info = PngInfo()
    info.add_itxt("napari-chromagan", '{"software": "napari-chromagan", "version"')
    Image.fromarray(rgb).save(tmp_path / "damaged.png", pnginfo=info)
    with pytest.raises(provenance.ProvenanceError, match="damaged"):
        provenance.read_provenance(tmp_path / "damaged.png")
    # other programs' metadata is not mistaken for a record
    Image.fromarray(rgb).save(tmp_path / "other.jpg", comment=b"scanned at the city archive")
    tifffile.imwrite(tmp_path / "other.tif", rgb, description="a free-text description")
    assert provenance.read_provenance(tmp_path / "other.jpg") is None
    assert provenance.read_provenance(tmp_path / "other.tif") is None
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(provenance.UnsupportedImageError, match="not a PNG, JPEG, WebP or TIFF"):
        provenance.read_provenance(tmp_path / "notes.txt")


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(("fmt", "ext"), [("png", ".png"), ("jpeg", ".jpg"), ("tiff", ".tif")])
def test_colorize_outputs_carry_the_record_and_info_reads_it(tmp_path, capsys, weights, fmt, ext):
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert (
        main(
            [
                "colorize",
                str(inputs),
                "-o",
                str(out),
                "--weights",
                str(weights),
                "--format",
                fmt,
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"gray16_colorized{ext}", f"gray8_colorized{ext}"]
    records = {p.name: provenance.read_provenance(p) for p in written}
    for record in records.values():
        assert record["software"] == "napari-chromagan" and record["version"] == __version__
        assert record["weights_name"] == "w.pt" and record["weights_sha256"] == _sha256(weights)
        assert record["precision"] == AUTO_ON_CPU and record["device"] == "cpu"
        assert "hints" not in record and _now_ish(record["date"])
    # each file's own normalisation: 8-bit by its dtype range, 16-bit by its percentiles
    assert records[f"gray8_colorized{ext}"]["normalization"] == DTYPE_NORM
    norm16 = records[f"gray16_colorized{ext}"]["normalization"]
    assert norm16["mode"] == "percentile" and norm16["percentiles"] == [0.5, 99.5]
    source = imageio.read_image(inputs / "gray16.png").astype(np.float64)
    assert norm16["low"] == pytest.approx(np.percentile(source, 0.5), rel=0.02)
    assert norm16["high"] == pytest.approx(np.percentile(source, 99.5), rel=0.02)

    target = out / f"gray8_colorized{ext}"
    assert main(["info", str(target)]) == 0
    shown = capsys.readouterr().out
    assert f"napari-chromagan {__version__}" in shown and _sha256(weights) in shown
    assert (
        "normalisation: dtype (values 0 to 255)" in shown
        and f"precision: {AUTO_ON_CPU} on cpu" in shown
    )
    assert main(["info", "--json", *map(str, written)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {Path(d["file"]).name: d["provenance"] for d in lines} == records


def test_colorize_records_bf16_when_the_network_ran_in_bf16(tmp_path, capsys, weights):
    inputs = _inputs(tmp_path / "in")
    args = [
        "colorize",
        str(inputs / "gray8.png"),
        "-o",
        str(tmp_path / "out"),
        "--weights",
        str(weights),
    ]
    assert main([*args, "--precision", "bf16", "-q"]) == 0
    assert (
        provenance.read_provenance(tmp_path / "out" / "gray8_colorized.png")["precision"] == "bf16"
    )


def test_no_provenance_leaves_no_record_in_any_format(tmp_path, capsys, weights):
    inputs = _inputs(tmp_path / "in")
    written = []
    for fmt in ("png", "jpeg", "tiff", "webp"):
        out = tmp_path / fmt
        args = ["colorize", str(inputs), "-o", str(out), "--weights", str(weights), "--format", fmt]
        assert main([*args, "--no-provenance", "-q"]) == 0
        written += sorted(out.iterdir())
    assert len(written) == 8
    for path in written:
        assert provenance.read_provenance(path) is None
        assert b"napari-chromagan" not in path.read_bytes()  # not in any chunk, tag or segment
    capsys.readouterr()
    assert main(["info", str(written[0])]) == 1
    assert "no napari-chromagan provenance record" in capsys.readouterr().out


def test_info_exit_codes(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "not a PNG, JPEG, WebP or TIFF" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
