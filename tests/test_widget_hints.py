"""The Colour hints dock widget in a real (virtual-display) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HANG_MS, capture_notes
from skimage.color import rgb2lab

from napari_chromagan.edit.blend import render_rgb
from napari_chromagan.edit.hints import ColorHints, HintParams, apply_color_hints, colors_to_ab
from napari_chromagan.napari.layer_result import (
    METADATA_KEY,
    LayerResult,
    get_layer_result,
    is_colorized,
    result_metadata,
)

pytestmark = pytest.mark.qt

wh = pytest.importorskip("napari_chromagan.napari._widgets.hints")
from napari_chromagan.napari._widgets import _hint_runs as hint_runs  # noqa: E402

RED = "#dc1e1e"
BLUE = "#1e3cd2"


def make_result(stack=(3,), size=64):
    """A lighter disc on a dark ground in every plane (a strong edge), greenish network colours."""
    yy, xx = np.mgrid[0:size, 0:size]
    inside = np.hypot(yy - size / 2, xx - size / 2) < size / 4
    rng = np.random.default_rng(0)
    L = np.broadcast_to(np.where(inside, 58.0, 28.0), (*stack, size, size))
    L = (L + rng.normal(0, 0.5, L.shape)).astype(np.float32)
    ab = np.zeros((*L.shape, 2), np.float32)
    ab[..., 0], ab[..., 1] = -20.0, 25.0
    result = LayerResult(
        L, ab, None, True, source="gray", normalization={}, weights=None, device="cpu"
    ).packed()  # as a colourised layer stores it
    return result, inside


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def notes(monkeypatch):
    """The notifications the widget shows, as (kind, message)."""
    return capture_notes(
        monkeypatch, (wh, hint_runs), ("error", "info")
    )  # the widget, and its preview/Apply work


def add_colorized(viewer, result):
    rgb = render_rgb(result.L, result.ab)
    layer = viewer.add_image(rgb, rgb=True, name="gray colorized", metadata=result_metadata(result))
    return layer, rgb


def make_widget(viewer):
    widget = wh.ColorHintsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Colour hints")
    return widget


def wait_for(qtbot, widget, worker):
    assert worker is not None and worker is widget.worker
    qtbot.waitUntil(
        lambda: not worker.is_running and not widget._previewing and widget._pbar is None,
        timeout=HANG_MS,
    )


def preview_now(qtbot, widget):
    """Run the pending (debounced) preview at once and wait for it."""
    worker = widget.preview()
    wait_for(qtbot, widget, worker)


def test_points_with_colours_preview_the_plane_under_the_slider(viewer, qtbot):
    result, inside = make_result()
    layer, rgb = add_colorized(viewer, result)
    rgb_before = rgb.copy()
    widget = make_widget(viewer)
    assert widget.layer is layer and widget.hints_layer is None

    points = widget.new_points_layer()
    assert widget.hints_layer is points and points.mode == "add" and points.ndim == 3
    assert viewer.layers.selection.active is points
    viewer.dims.set_current_step(0, 1)
    widget.set_colour(RED)
    points.add([[1, 30.0, 34.0]])  # as a click would: the current plane, with the current colour
    np.testing.assert_allclose(points.face_color[0, :3], [0xDC / 255, 0x1E / 255, 0x1E / 255])
    assert widget._timer.isActive()  # the preview waits for the clicks to pause
    qtbot.waitUntil(lambda: widget.output is not None and not widget._previewing, timeout=HANG_MS)
    qtbot.waitUntil(lambda: "preview on 1 of 3" in widget._status.value, timeout=HANG_MS)

    out = widget.output
    assert out.name == "gray colorized hinted" and is_colorized(out)
    hints = ColorHints.from_points(
        [[1, 30.0, 34.0]], [(0xDC, 0x1E, 0x1E)], radius=points.size[0] / 2
    )
    expected = apply_color_hints(_colorize_result(result, rgb), hints)
    # the preview is exactly what Apply will show on that plane, and only that plane changed
    np.testing.assert_array_equal(out.data[1], expected.rgb[1])
    np.testing.assert_array_equal(out.data[[0, 2]], rgb[[0, 2]])
    red = colors_to_ab([(0xDC, 0x1E, 0x1E)])[0]
    seen = rgb2lab(out.data[1])[inside][:, 1:]
    assert np.median(np.hypot(*(seen - red).T)) < 0.35 * np.hypot(*red)
    # nothing of the user's was written into
    np.testing.assert_array_equal(layer.data, rgb_before)
    assert layer.data is rgb
    assert get_layer_result(out).ab is not None and out.metadata[wh.HINTS_KEY] == {
        "base": "gray colorized"
    }

    # a colour chosen for the next point leaves the points already placed as they are
    widget.set_colour(BLUE)
    points.add([[1, 10.0, 10.0]])
    np.testing.assert_allclose(points.face_color[0, :3], [0xDC / 255, 0x1E / 255, 0x1E / 255])
    np.testing.assert_allclose(points.face_color[1, :3], [0x1E / 255, 0x3C / 255, 0xD2 / 255])
    points.data = points.data[:1]
    preview_now(qtbot, widget)

    # moving to another plane previews it too, with the same hints (a 3-coordinate point: none)
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: "preview on 2 of 3" in widget._status.value, timeout=HANG_MS)
    np.testing.assert_array_equal(out.data[2], rgb[2])


def _colorize_result(result, rgb):
    from napari_chromagan.engine.normalize import Normalization
    from napari_chromagan.engine.result import ColorizeResult

    return ColorizeResult(
        rgb, np.asarray(result.L), result.ab, None, Normalization("dtype", 0.0, 255.0), None, "cpu"
    )


def test_apply_to_the_stack_stores_hints_and_parameters(viewer, qtbot):
    result, _inside = make_result(stack=(4,))
    layer, rgb = add_colorized(viewer, result)
    widget = make_widget(viewer)
    points = widget.new_points_layer()
    points.current_face_color = BLUE
    points.add([[0, 32.0, 32.0], [2, 30.0, 30.0]])
    widget._strength.value = 80
    widget._reach.value = 40
    worker = widget.apply_to_stack()
    assert widget.running and widget._cancel_button.enabled and not widget._apply_button.enabled
    wait_for(qtbot, widget, worker)
    assert not widget.running and widget._status.value == "applied to the whole layer"

    out = widget.output
    params = HintParams(strength=0.8, reach=0.4)
    hints = wh.hints_from_layer(points, layer, result.L.shape)
    expected = apply_color_hints(_colorize_result(result, rgb), hints, strength=0.8, reach=0.4)
    np.testing.assert_array_equal(out.data, expected.rgb)
    np.testing.assert_array_equal(out.data[[1, 3]], rgb[[1, 3]])  # planes without a hint
    stored = get_layer_result(out)
    assert stored.is_packed
    np.testing.assert_array_equal(stored.ab, expected.ab.astype(np.float16))  # as stored
    np.testing.assert_array_equal(stored.L, result.L)
    record = out.metadata[wh.HINTS_KEY]
    assert record["base"] == "gray colorized" and HintParams.from_dict(record["params"]) == params
    again = ColorHints.from_dict(record["hints"])
    np.testing.assert_array_equal(again.coords, [[0, 32.0, 32.0], [2, 30.0, 30.0]])
    # a saved session can redo them: the record and the base layer's result give the same pixels
    redo = apply_color_hints(
        _colorize_result(get_layer_result(layer), rgb), again, **record["params"]
    )
    np.testing.assert_array_equal(redo.rgb, out.data)
    # the hinted layer is a colourised layer like any other (Chroma blend lists it), but not a
    # base for more hints (they would pile up)
    from napari_chromagan.napari._widgets.blend import ChromaBlendWidget

    assert any(value is out for _, value in ChromaBlendWidget(viewer)._layer_choices())
    assert all(value is not out for _, value in widget._layer_choices())


def test_cancel_keeps_the_output_pixels_and_reset_brings_the_model_back(viewer, qtbot):
    result, _ = make_result(stack=(12,), size=96)
    layer, rgb = add_colorized(viewer, result)
    widget = make_widget(viewer)
    points = widget.new_points_layer()
    points.add([[p, 48.0, 48.0] for p in range(12)])
    worker = widget.apply_to_stack()
    widget.cancel()  # before the first plane is done: the worker stops at its first yield
    wait_for(qtbot, widget, worker)
    assert worker.abort_requested
    assert "cancelled" in widget._status.value and not widget.running
    np.testing.assert_array_equal(widget.output.data, rgb)  # the pixels it had
    assert widget.output.metadata[wh.HINTS_KEY] == {"base": "gray colorized"}

    wait_for(qtbot, widget, widget.apply_to_stack())
    assert not np.array_equal(widget.output.data, rgb)
    widget.reset()
    np.testing.assert_array_equal(widget.output.data, rgb)
    np.testing.assert_array_equal(get_layer_result(widget.output).ab, result.ab)
    assert widget.output.metadata[wh.HINTS_KEY] == {"base": "gray colorized"}
    np.testing.assert_array_equal(layer.data, rgb)


def test_labels_and_shapes_layers_are_hints_too(viewer, qtbot):
    result, _inside = make_result(stack=())
    _layer, _rgb = add_colorized(viewer, result)
    widget = make_widget(viewer)
    labels = np.zeros((64, 64), np.int32)
    labels[20:44, 20:44] = 5
    hint_labels = viewer.add_labels(labels, name="objects")
    widget.hints_layer = hint_labels
    assert widget._feather.native.isVisibleTo(
        widget.native
    ) and not widget._reach.native.isVisibleTo(widget.native)
    preview_now(qtbot, widget)
    colour = np.asarray(hint_labels.get_color(5))[:3]
    target = colors_to_ab([colour])[0]
    out_ab = get_layer_result(widget.output).ab  # a 2D result: the preview is the result
    core = np.zeros((64, 64), bool)
    core[22:42, 22:42] = True
    assert np.abs(out_ab[core] - target).max() < 2.0
    assert widget.output.metadata[wh.HINTS_KEY]["hints"]["fill"] is True

    shapes = viewer.add_shapes(
        [[[10, 10], [10, 54]]], shape_type="line", edge_color=BLUE, name="strokes"
    )
    widget.hints_layer = shapes
    preview_now(qtbot, widget)
    blue = colors_to_ab([(0x1E, 0x3C, 0xD2)])[0]
    out_ab = get_layer_result(widget.output).ab
    assert np.abs(out_ab[10, 12:52] - blue).max() < 3.0


def test_bad_hints_say_so_without_a_traceback(viewer, qtbot, notes):
    result, _ = make_result(stack=(3,))
    add_colorized(viewer, result)
    widget = make_widget(viewer)
    viewer.add_labels(np.zeros((5, 7), np.int32), name="wrong shape")
    widget.hints_layer = viewer.layers["wrong shape"]
    assert widget.preview() is None
    assert "the plane's (64, 64)" in widget._status.value
    assert widget.apply_to_stack() is None
    assert notes and "the plane's (64, 64)" in notes[-1][1]
    widget.set_colour("reddish")
    assert "not a colour" in widget._status.value


def test_no_colourised_layer(viewer, notes):
    viewer.add_image(np.zeros((8, 8)), name="plain")
    widget = make_widget(viewer)
    assert widget.layer is None
    assert "run Colorize" in widget._status.value
    assert widget.new_points_layer() is None and widget.apply_to_stack() is None
    assert notes[-1][0] == "info"
    assert METADATA_KEY not in viewer.layers["plain"].metadata


def test_on_a_colourised_layer_hints_match_float32_within_tolerance(viewer, qtbot):
    from conftest import make_generator

    from napari_chromagan import colorize_layer
    from napari_chromagan.engine.colorize import Colorizer

    yy, xx = np.mgrid[0:48, 0:48]
    gray = np.where(np.hypot(yy - 24, xx - 24) < 12, 170, 60) + 20 * np.sin(xx / 5)
    source = viewer.add_image(np.stack([gray] * 2).astype(np.uint8), name="gray")
    colorizer = Colorizer(make_generator(), "cpu")
    layer = colorize_layer(source, viewer, colorizer, with_class=False)
    engine = colorizer.colorize(source.data, with_class=False)
    widget = make_widget(viewer)
    assert widget.layer is layer
    points = widget.new_points_layer()
    widget.set_colour(BLUE)
    points.add([[1, 24.0, 24.0]])
    wait_for(qtbot, widget, widget.apply_to_stack())
    hints = ColorHints.from_points(
        [[1, 24.0, 24.0]], [(0x1E, 0x3C, 0xD2)], radius=points.size[0] / 2
    )
    expected = apply_color_hints(engine, hints)
    out = widget.output.data
    np.testing.assert_array_equal(out[0], engine.rgb[0])  # no hint on plane 0: the engine's pixels
    levels = np.abs(out[1].astype(int) - expected.rgb[1]).max(axis=-1)
    assert levels.max() <= 2 and (levels > 0).mean() <= 0.03  # as measured on photographs
    assert np.abs(out[1].astype(int) - engine.rgb[1]).max() > 20  # the hint did change it
