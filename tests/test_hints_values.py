"""Colour hints as plain values (napari_chromagan.edit.hints): colours as napari gives them,
round trips through plain values, hints that are refused and why, and the hints CSV; no Qt.
The scene helpers are test_hints'."""

from __future__ import annotations

import numpy as np
import pytest
from test_hints import BLUE, RED, make_stack, oracle_ab

from napari_chromagan import apply_color_hints
from napari_chromagan.edit.hints import ColorHints, HintParams, colors_to_ab
from napari_chromagan.errors import HintError

# ----------------------------------------------------------------------------------- data types


def test_colours_are_read_as_napari_gives_them():
    ab_uint8 = colors_to_ab([[220, 20, 20]])
    ab_float = colors_to_ab([[220 / 255, 20 / 255, 20 / 255, 1.0]])  # a face colour, RGBA
    np.testing.assert_allclose(ab_uint8, ab_float, atol=1e-4)
    np.testing.assert_allclose(ab_uint8, oracle_ab([RED]), atol=0.05)
    np.testing.assert_array_equal(colors_to_ab([[50, 12.5, -30]], space="lab"), [[12.5, -30]])


def test_hints_and_parameters_survive_a_round_trip_through_plain_values():
    hints = ColorHints.from_points([[1, 5.0, 6.0], [0, 7.5, 8.0]], [RED, BLUE], radius=[3, 4])
    again = ColorHints.from_dict(hints.to_dict())
    np.testing.assert_array_equal(again.coords, hints.coords)
    np.testing.assert_array_equal(again.ab, hints.ab)
    np.testing.assert_array_equal(again.radius, hints.radius)
    mask = np.zeros((4, 5), np.int16)
    mask[1, 1] = 3
    labels = ColorHints.from_dict(ColorHints.from_labels(mask, {3: BLUE}).to_dict())
    assert labels.fill and labels.mask is mask and labels.mask_labels.tolist() == [3]
    params = HintParams(strength=0.5, reach=0.3, edge=4.0, feather=2.0, working_pixels=1 << 14)
    assert HintParams.from_dict(params.to_dict()) == params
    assert HintParams.from_dict({}) == HintParams()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HintParams(strength=1.5), r"strength must be in \[0, 1\]"),
        (lambda: HintParams(reach=0), r"reach must be in"),
        (lambda: HintParams(edge=float("nan")), r"edge must be in"),
        (lambda: ColorHints.from_points([[1.0, 2.0]], [[300, 0, 0]]), r"\[0, 255\]"),
        (lambda: ColorHints.from_points([[1.0, 2.0]], [[1.5, 0.0, 0.0]]), r"\[0, 1\]"),
        (lambda: ColorHints.from_points([[1.0, 2.0], [3.0, 4.0]], [RED]), "one colour per point"),
        (lambda: ColorHints.from_points([[1.0, 2.0]], [RED], radius=0), "radii must be > 0"),
        (lambda: ColorHints.from_points([[1.0]], [RED]), r"\(n, 2\)"),
        (lambda: ColorHints.from_labels(np.zeros((4, 4)), {1: RED}), "integer"),
    ],
)
def test_bad_hints_raise_errors_that_say_what_to_do(make, message):
    with pytest.raises(HintError, match=message):
        make()


def test_hints_that_do_not_fit_the_result_are_refused():
    result, _ = make_stack()
    with pytest.raises(HintError, match=r"2 \(row, col: every plane\) or 3"):
        apply_color_hints(result, ColorHints.from_points([[0, 1, 2.0, 3.0]], [RED]))
    with pytest.raises(
        HintError, match=r"the plane's \(64, 80\) or the whole result's \(3, 64, 80\)"
    ):
        apply_color_hints(result, ColorHints.from_labels(np.ones((2, 64, 80), np.int32), {1: RED}))


# ----------------------------------------------------------------------------------- CSV


def test_hints_csv_with_and_without_a_header(tmp_path):
    from napari_chromagan.edit.hints import read_hints_csv

    plain = tmp_path / "plain.csv"
    plain.write_text("# x, y, colour\n10, 20, #dc1414\n\n30.5, 40, 0 128 255\n")
    hints = read_hints_csv(plain)
    np.testing.assert_array_equal(hints.coords, [[20, 10], [40, 30.5]])  # (row, col) = (y, x)
    np.testing.assert_allclose(hints.ab, colors_to_ab([[220, 20, 20], [0, 128, 255]]))
    np.testing.assert_array_equal(hints.radius, [5.0, 5.0])

    headed = tmp_path / "headed.csv"
    headed.write_text(
        "file,plane,x,y,color,radius\na.png,2,1,2,#00ff00,3\n,0,5,6,#0000ff,\nb.png,1,7,8,#ff0000,4\n"
    )
    hints = read_hints_csv(headed, "a.png")
    np.testing.assert_array_equal(hints.coords, [[2, 2, 1], [0, 6, 5]])  # b.png's row left out
    np.testing.assert_array_equal(hints.radius, [3.0, 5.0])
    assert read_hints_csv(headed, "c.png").coords.tolist() == [[0, 6, 5]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1, 2\n", r"line 1: 2 values; expected 4"),
        ("1, 2, #12345\n", r"line 1: colour '#12345' is neither"),
        ("1, 2, 0, #ff0000\n1, 2, #ff0000\n", "either every row gives a plane or none does"),
        ("x, y, hue\n1, 2, 3\n", "the header must name x, y and colour"),
        ("one, 2, 3, #ff0000\n4, 5, 6, #ff0000\n", "the header must name"),
    ],
)
def test_bad_hints_csv_names_the_line(tmp_path, text, message):
    from napari_chromagan.edit.hints import read_hints_csv

    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(HintError, match=message):
        read_hints_csv(path)
    with pytest.raises(HintError, match="cannot read the hints file"):
        read_hints_csv(tmp_path / "absent.csv")
