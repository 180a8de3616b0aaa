"""``napari-chromagan colorize --hints CSV``: the same pixels as the Python API, and a record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_generator
from PIL import Image

from napari_chromagan.cli import main
from napari_chromagan.edit.hints import apply_color_hints, colors_to_ab, read_hints_csv
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.files import imageio
from napari_chromagan.files.provenance import read_provenance
from napari_chromagan.weights.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt", make_generator())


def disc_png(path, size=96):
    yy, xx = np.mgrid[0:size, 0:size]
    gray = np.where(np.hypot(yy - 48, xx - 48) < 28, 150, 60).astype(np.uint8)
    Image.fromarray(gray).save(path)
    return path


def test_colorize_with_a_hints_csv_matches_the_python_api(tmp_path, capsys, weights):
    image = disc_png(tmp_path / "disc.png")
    csv = tmp_path / "hints.csv"
    csv.write_text("x,y,colour,file\n50,44,#dc1414,disc.png\n5,5,#1414dc,other.png\n")
    code = main(
        [
            "colorize",
            str(image),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
            "--hints",
            str(csv),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    written = np.asarray(Image.open(tmp_path / "out" / "disc_colorized.png").convert("RGB"))

    colorizer = Colorizer(load_checkpoint(weights).generator, "cpu")
    plain = colorizer.colorize(imageio.read_image(image), with_class=False)
    expected = apply_color_hints(plain, read_hints_csv(csv, "disc.png"))
    np.testing.assert_array_equal(written, expected.rgb)
    assert not np.array_equal(written, plain.rgb)
    # the disc turned red; the point for other.png was not applied
    red = colors_to_ab([[220, 20, 20]])[0]
    centre = expected.ab[40:56, 40:56].reshape(-1, 2)
    assert np.abs(centre - red).max() < 0.3 * np.hypot(*red)
    record = read_provenance(tmp_path / "out" / "disc_colorized.png")
    assert record["hints"]["points"] == 1
    assert record["hints"]["point_coords"] == [[44.0, 50.0]]
    json.dumps(record)


def test_a_bad_hints_csv_fails_that_input_with_the_line(tmp_path, capsys, weights):
    image = disc_png(tmp_path / "disc.png")
    csv = tmp_path / "hints.csv"
    csv.write_text("10, 20, #dc1414\n10, 20, reddish\n")
    code = main(
        [
            "colorize",
            str(image),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
            "--hints",
            str(csv),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "hints.csv, line 2: colour 'reddish' is neither #rrggbb nor 'r g b'" in err
    assert not (tmp_path / "out" / "disc_colorized.png").exists()
