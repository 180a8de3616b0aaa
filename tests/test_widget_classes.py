"""The Class distribution dock widget in a real (virtual-display) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromagan.edit.blend import render_rgb
from napari_chromagan.engine.classes import class_names, to_csv, top_k
from napari_chromagan.napari.layer_result import LayerResult, result_metadata

pytestmark = pytest.mark.qt

wc = pytest.importorskip("napari_chromagan.napari._widgets.classes")


def make_result(stack=(6,), size=16, seed=0, probs=True, trained=True, source="gray"):
    rng = np.random.default_rng(seed)
    L = rng.uniform(20, 80, (*stack, size, size)).astype(np.float32)
    ab = rng.uniform(-30, 30, (*stack, size, size, 2)).astype(np.float32)
    class_probs = (
        rng.dirichlet(np.full(1000, 0.05), size=stack).astype(np.float32) if probs else None
    )
    return LayerResult(
        L, ab, class_probs, trained, source=source, normalization={}, weights=None, device="cpu"
    )


def add_colorized(viewer, result, name="gray colorized", **kwargs):
    return viewer.add_image(
        render_rgb(result.L, result.ab),
        rgb=True,
        name=name,
        metadata=result_metadata(result),
        **kwargs,
    )


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def make_widget(viewer):
    widget = wc.ClassDistributionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Class distribution")
    return widget


def shown(widget):
    return widget._bars.shown()


def expected_shown(rows):
    return [(name, f"{100 * p:.1f} %") for _, name, p in rows]


def test_bars_are_the_top_k_of_the_plane_under_the_slider(viewer):
    result = make_result()
    viewer.add_image(np.zeros((6, 16, 16), np.uint8), name="gray")
    layer = add_colorized(viewer, result)
    widget = make_widget(viewer)
    assert widget.layer is layer
    for plane in (0, 4, 2):
        viewer.dims.set_current_step(0, plane)
        expected = top_k(result.class_probs[plane], 5)
        assert widget.rows() == expected
        assert shown(widget) == expected_shown(expected)
        assert [bar.value() for bar in widget._bars.bars[:5]] == [
            round(p * 10000) for _, _, p in expected
        ]
    # the planes differ, so following the slider is visible in the names
    assert top_k(result.class_probs[0], 5) != top_k(result.class_probs[2], 5)

    widget.k = 12
    assert widget.rows() == top_k(result.class_probs[2], 12)
    assert len(shown(widget)) == 12
    widget.k = 3
    assert shown(widget) == expected_shown(top_k(result.class_probs[2], 3))
    assert widget.message() == ""


def test_k_is_remembered(viewer):
    add_colorized(viewer, make_result())
    widget = make_widget(viewer)
    assert widget.k == 5
    widget.k = 7
    assert make_widget(viewer).k == 7


def test_translated_and_scaled_layers_map_the_slider_to_their_own_planes(viewer):
    result = make_result(stack=(4,))
    layer = add_colorized(viewer, result, translate=(10, 0, 0), scale=(2, 1, 1))
    widget = make_widget(viewer)
    viewer.dims.set_point(0, 14.0)  # world 14 = data plane (14 - 10) / 2 = 2
    assert wc.plane_index(viewer, layer, (4,)) == (2,)
    assert widget.rows() == top_k(result.class_probs[2], 5)


def test_two_stack_axes_and_a_2d_result(viewer):
    result = make_result(stack=(3, 4), seed=1)
    add_colorized(viewer, result, name="tz colorized")
    widget = make_widget(viewer)
    viewer.dims.set_current_step(0, 2)
    viewer.dims.set_current_step(1, 1)
    assert widget.rows() == top_k(result.class_probs[2, 1], 5)

    flat = make_result(stack=(), seed=2)
    layer = add_colorized(viewer, flat, name="photo colorized")
    widget.layer = layer
    assert widget.rows() == top_k(flat.class_probs, 5)


def test_untrained_or_skipped_class_head_shows_a_message(viewer):
    untrained = add_colorized(viewer, make_result(trained=False), name="a colorized")
    skipped = add_colorized(viewer, make_result(probs=False), name="b colorized")
    unknown = add_colorized(viewer, make_result(trained=None), name="c colorized")
    widget = make_widget(viewer)
    widget.layer = untrained
    assert widget.rows() == [] and shown(widget) == []
    assert widget.message() == wc.UNTRAINED
    assert "class head was not trained" in widget.message()
    assert not widget._copy.isEnabled()
    widget.layer = skipped
    assert widget.rows() == [] and widget.message() == wc.SKIPPED
    widget.layer = unknown
    assert len(widget.rows()) == 5 and widget.message() == wc.UNKNOWN_TRAINING


def test_copy_csv_puts_the_table_on_the_clipboard(viewer):
    from qtpy.QtWidgets import QApplication

    result = make_result()
    add_colorized(viewer, result)
    widget = make_widget(viewer)
    viewer.dims.set_current_step(0, 3)
    widget._copy.click()
    text = QApplication.clipboard().text()
    assert text == to_csv(top_k(result.class_probs[3], 5))
    first = text.splitlines()[1].split(",")
    assert first[:3] == ["1", str(widget.rows()[0][0]), class_names()[widget.rows()[0][0]]]


def test_follows_layers_added_removed_renamed_and_rerun(viewer):
    widget = make_widget(viewer)
    assert widget.layer is None and widget.message() == wc.NO_LAYER
    gray = viewer.add_image(np.zeros((6, 16, 16), np.uint8), name="gray")
    assert widget._layer_box.count() == 0  # plain layers are not offered

    first = make_result(seed=3)
    layer = add_colorized(viewer, first)
    assert widget.layer is layer
    viewer.dims.set_current_step(0, 0)
    assert widget.rows() == top_k(first.class_probs[0], 5)

    layer.name = "renamed"
    assert widget._layer_box.itemText(0) == "renamed"

    # a rerun replaces the pixels and the stored result in place
    second = make_result(seed=4)
    layer.data = render_rgb(second.L, second.ab)
    layer.metadata = result_metadata(second)
    assert widget.rows() == top_k(second.class_probs[0], 5)
    assert widget.rows() != top_k(first.class_probs[0], 5)

    # a layer that becomes colourised later (Colorize updating it) is picked up
    gray.metadata = result_metadata(make_result(seed=5))
    assert widget._layer_box.count() == 2

    viewer.layers.remove(layer)
    assert widget._layer_box.count() == 1 and widget.layer is gray
    viewer.layers.remove(gray)
    assert widget.layer is None and widget.rows() == [] and widget.message() == wc.NO_LAYER


def test_on_a_colourised_layer_the_bars_are_the_engines_class_distribution(viewer):
    from conftest import make_generator

    from napari_chromagan import colorize_layer
    from napari_chromagan.engine.colorize import Colorizer

    yy, xx = np.mgrid[0:32, 0:32]
    gray = np.stack([(xx * (4 + p) + yy * 3) % 256 for p in range(3)]).astype(np.uint8)
    source = viewer.add_image(gray, name="gray")
    colorizer = Colorizer(make_generator(), "cpu")
    colorize_layer(source, viewer, colorizer, with_class=True)
    engine = colorizer.colorize(gray, with_class=True)
    widget = make_widget(viewer)
    for plane in (2, 0):
        viewer.dims.set_current_step(0, plane)
        assert widget.rows() == top_k(engine.class_probs[plane], 5)  # stored as they are: exact
