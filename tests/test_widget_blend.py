"""The Chroma blend dock widget in a real (virtual-display) napari viewer."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import HANG_MS, capture_notes
from skimage.color import rgb2lab

import napari_chromagan.weights.lookup as weights_module
from napari_chromagan.edit.blend import BlendParams, apply_to_stack, render_rgb, smooth_ab
from napari_chromagan.napari.layer_result import (
    METADATA_KEY,
    LayerResult,
    get_layer_result,
    result_metadata,
)

pytestmark = pytest.mark.qt

wb = pytest.importorskip("napari_chromagan.napari._widgets.blend")
from napari_chromagan.napari._widgets import _blend_runs as blend_runs  # noqa: E402

SHIPPED = weights_module.PACKAGED_WEIGHTS  # the real path (conftest redirects it only inside tests)


def make_result(stack=(5,), size=24, seed=0, flicker=0.0, packed=True):
    """A result in the form a colourised layer stores it (``packed=False``: float32 arrays)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    L = np.broadcast_to(30 + 50 * xx * (0.5 + yy), (*stack, size, size)).astype(np.float32).copy()
    ab = np.empty((*stack, size, size, 2), np.float32)
    ab[..., 0] = 25 * np.cos(6 * yy) - 5
    ab[..., 1] = 30 * np.sin(5 * xx) + 10
    if flicker:
        ab += rng.normal(0, flicker, (*stack, 1, 1, 2)).astype(np.float32)
    result = LayerResult(
        L, ab, None, True, source="gray", normalization={}, weights=None, device="cpu"
    )
    return result.packed() if packed else result


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def notes(monkeypatch):
    """The notifications the widget shows, as (kind, message)."""
    return capture_notes(
        monkeypatch, (wb, blend_runs), ("error", "info")
    )  # the widget, and its preview/Apply work


def add_pair(viewer, result):
    """A gray source layer and its colourised layer (rendered as Colorize would)."""
    source_data = (np.asarray(result.L) * 2.55).astype(np.uint8)
    source = viewer.add_image(source_data, name="gray")
    rgb = render_rgb(result.L, result.ab)
    layer = viewer.add_image(rgb, rgb=True, name="gray colorized", metadata=result_metadata(result))
    return source, layer, rgb


def shown(control):
    """Whether a control is meant to be visible (the viewer's window itself is not shown)."""
    return not control.native.isHidden()


def make_widget(viewer):
    widget = wb.ChromaBlendWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Chroma blend")
    return widget


def start_and_wait(qtbot, widget, start):
    """Run ``start()`` (which starts the widget's worker) and wait until its handlers have run."""
    worker = start()
    assert worker is not None and worker is widget.worker
    # _on_finished (after returned) clears the progress bar
    qtbot.waitUntil(lambda: widget._pbar is None and not worker.is_running, timeout=HANG_MS)
    return worker


def test_sliders_render_the_current_plane_from_the_stored_result(viewer):
    result = make_result()
    source, layer, rgb = add_pair(viewer, result)
    source_before, rgb_before = source.data.copy(), rgb.copy()
    widget = make_widget(viewer)
    assert widget.layer is layer
    viewer.dims.set_current_step(0, 3)

    widget._strength.value = 160
    p = BlendParams(strength=1.6)
    assert widget.params() == p
    np.testing.assert_array_equal(layer.data[3], render_rgb(result.L[3], result.ab[3], p))
    assert not np.array_equal(layer.data[3], rgb[3])
    np.testing.assert_array_equal(
        layer.data[[0, 1, 2, 4]], rgb[[0, 1, 2, 4]]
    )  # only the shown plane

    widget._gray.value = 40
    widget._hue.value = -90
    widget._a_offset.value = 10
    widget._b_offset.value = -6.5
    p = BlendParams(strength=1.6, gray=0.4, hue_degrees=-90, a_offset=10, b_offset=-6.5)
    assert widget.params() == p
    np.testing.assert_array_equal(layer.data[3], render_rgb(result.L[3], result.ab[3], p))

    # the preview follows the dims slider
    viewer.dims.set_current_step(0, 1)
    np.testing.assert_array_equal(layer.data[1], render_rgb(result.L[1], result.ab[1], p))
    np.testing.assert_array_equal(layer.data[[0, 2, 4]], rgb[[0, 2, 4]])
    assert "preview on 2 of 5 planes" in widget._status.value

    # never written into: the array the layer was made with, the source layer, the stored result
    assert layer.data is not rgb
    np.testing.assert_array_equal(rgb, rgb_before)
    np.testing.assert_array_equal(source.data, source_before)
    stored = get_layer_result(layer)
    np.testing.assert_array_equal(stored.L, make_result().L)
    np.testing.assert_array_equal(stored.ab, make_result().ab)
    assert stored.blend == {}  # a stack is only recorded as blended after Apply


def test_strength_zero_and_full_gray_blend_are_gray(viewer):
    result = make_result(stack=())
    _, layer, _ = add_pair(viewer, result)
    widget = make_widget(viewer)
    assert not shown(widget._sigma) and not shown(widget._axis)  # nothing to smooth in 2D
    assert widget._apply_button.text == "Apply"
    widget._strength.value = 0
    rgb = layer.data.astype(int)
    assert np.abs(rgb - rgb[..., :1]).max() <= 1
    lab = rgb2lab(layer.data)
    assert np.abs(lab[..., 0] - np.asarray(result.L)).max() < 0.5
    widget._strength.value = 100
    widget._gray.value = 100
    np.testing.assert_array_equal(layer.data, render_rgb(result.L, np.zeros_like(result.ab)))
    # a 2D result: the preview is the whole layer, so it is recorded at once
    assert get_layer_result(layer).blend == BlendParams(gray=1.0).to_dict()


def test_reset_restores_the_model_output(viewer):
    result = make_result()
    _, layer, rgb = add_pair(viewer, result)
    widget = make_widget(viewer)
    viewer.dims.set_current_step(0, 2)
    widget._strength.value = 30
    widget._hue.value = 45
    assert not np.array_equal(layer.data, rgb)
    assert widget.reset() is None  # the model's output was still known: no re-rendering
    np.testing.assert_array_equal(layer.data, rgb)
    assert widget.params() == BlendParams()
    assert get_layer_result(layer).blend == {}
    # after a reset the next change copies again instead of writing into the model's output
    widget._strength.value = 150
    np.testing.assert_array_equal(rgb, render_rgb(result.L, result.ab))


def test_reset_after_apply_gives_back_the_engines_own_pixels(viewer, qtbot):
    """Reset restores what the engine wrote, bit for bit, though the preview renders otherwise."""
    from skimage import data as skdata

    from napari_chromagan.color.render import render_srgb
    from napari_chromagan.engine.colorize import Colorizer

    colorizer = Colorizer.from_checkpoint(SHIPPED, "cpu")
    gray = skdata.camera()[::4, ::4]
    engine = colorizer.colorize(np.stack([gray, gray[::-1], gray[:, ::-1]]), with_class=False)
    result = LayerResult.from_colorize_result(engine, source="gray", class_head_trained=None)
    rgb = engine.rgb
    layer = viewer.add_image(
        rgb, rgb=True, name="camera colorized", metadata=result_metadata(result)
    )
    widget = make_widget(viewer)
    # the table-method rendering of the stored result is not the engine's: a re-render cannot Reset
    assert (render_srgb(result.L, result.ab) != rgb).any()
    widget._strength.value = 140
    widget._hue.value = 20
    start_and_wait(qtbot, widget, widget.apply_to_stack)
    assert not np.array_equal(layer.data, rgb)
    widget._strength.value = 100
    widget._hue.value = 0  # back to neutral: the preview shows the engine's pixels again
    np.testing.assert_array_equal(layer.data[widget.current_index()], rgb[widget.current_index()])
    assert widget.reset() is None
    np.testing.assert_array_equal(layer.data, rgb)
    assert layer.data is rgb and get_layer_result(layer).blend == {}


def test_apply_to_stack_with_smoothing_lowers_flicker(viewer, qtbot):
    result = make_result(stack=(8,), flicker=8.0)
    _, layer, rgb = add_pair(viewer, result)
    widget = make_widget(viewer)
    assert shown(widget._sigma) and not shown(widget._axis)  # one stack axis: no axis choice
    widget._sigma.value = 2.0
    widget._strength.value = 120
    p = BlendParams(strength=1.2, smooth_sigma=2.0)
    # the preview of the current plane already shows the smoothing (from neighbouring planes)
    index = widget.current_index()
    expected_plane = render_rgb(result.L, smooth_ab(result.ab, 2.0, 0), p)[index]
    assert np.abs(layer.data[index].astype(int) - expected_plane).max() <= 1

    start_and_wait(qtbot, widget, widget.apply_to_stack)
    np.testing.assert_array_equal(layer.data, apply_to_stack(result.L, result.ab, p))
    assert get_layer_result(layer).blend == p.to_dict()
    assert widget._status.value == "applied to the whole layer"

    def flicker(pixels):
        return np.abs(np.diff(rgb2lab(pixels)[..., 1:], axis=0)).mean()

    assert flicker(layer.data) < 0.4 * flicker(rgb)

    # a new widget opened on the blended layer shows its settings; Reset re-renders the model output
    other = make_widget(viewer)
    assert other.params() == p
    start_and_wait(qtbot, other, other.reset)
    assert get_layer_result(layer).blend == {}
    np.testing.assert_array_equal(layer.data, render_rgb(result.L, result.ab))


def test_cancel_keeps_the_pixels(viewer, qtbot):
    result = make_result(stack=(30,), size=64)
    _, layer, rgb = add_pair(viewer, result)
    widget = make_widget(viewer)
    widget.set_params(BlendParams(strength=0.5), preview=False)
    worker = widget.apply_to_stack()
    assert widget.running and not widget._strength.enabled and widget._cancel_button.enabled
    widget.cancel()  # before the worker's first plane: it stops at its first yield
    qtbot.waitUntil(lambda: widget._pbar is None and not worker.is_running, timeout=HANG_MS)
    assert worker.abort_requested
    np.testing.assert_array_equal(layer.data, rgb)
    assert get_layer_result(layer).blend == {}
    assert widget._strength.enabled and not widget._cancel_button.enabled
    assert "cancelled" in widget._status.value


def test_settings_beyond_the_slider_ranges(viewer):
    result = make_result()
    layer = viewer.add_image(
        render_rgb(result.L, result.ab, BlendParams(a_offset=50.0, smooth_sigma=20.0)),
        rgb=True,
        name="x colorized",
        metadata=result_metadata(
            LayerResult(
                **{
                    **result.__dict__,
                    "blend": BlendParams(a_offset=50.0, smooth_sigma=20.0).to_dict(),
                }
            )
        ),
    )
    widget = make_widget(viewer)
    assert widget.layer is layer
    assert widget.params() == BlendParams(a_offset=50.0, smooth_sigma=20.0)


def test_axis_choice_for_two_stack_axes(viewer, qtbot):
    result = make_result(stack=(3, 6), flicker=8.0, size=16)
    _, layer, _ = add_pair(viewer, result)
    widget = make_widget(viewer)
    assert shown(widget._axis) and shown(widget._sigma)
    assert [value for _, value in widget._axis_choices()] == [0, 1]
    widget._axis.value = 1
    widget._sigma.value = 1.5
    assert widget.params() == BlendParams(smooth_sigma=1.5, smooth_axis=1)
    start_and_wait(qtbot, widget, widget.apply_to_stack)
    np.testing.assert_array_equal(layer.data, render_rgb(result.L, smooth_ab(result.ab, 1.5, 1)))


def test_rerun_resets_the_widget_to_the_new_result(viewer):
    result = make_result()
    _, layer, _ = add_pair(viewer, result)
    widget = make_widget(viewer)
    widget._strength.value = 180
    # Colorize run again: new pixels and a new stored result (its blend is {})
    new = make_result(seed=1, flicker=5.0)
    new_rgb = render_rgb(new.L, new.ab)
    layer.data = new_rgb
    layer.metadata = result_metadata(new)
    assert widget.params() == BlendParams()
    np.testing.assert_array_equal(widget._state.result.ab, new.ab)
    widget._hue.value = 30
    index = widget.current_index()
    np.testing.assert_array_equal(
        layer.data[index], render_rgb(new.L[index], new.ab[index], BlendParams(hue_degrees=30))
    )
    assert layer.data is not new_rgb


def test_layer_choice_follows_the_viewer(viewer, notes):
    widget = make_widget(viewer)
    assert widget.layer is None
    assert widget.preview() is False
    assert "No colourised layer" in widget._status.value
    _, layer, _ = add_pair(viewer, make_result())
    assert widget.layer is layer
    layer.name = "renamed"
    assert [name for name, _ in widget._layer_choices()] == ["renamed"]
    # a damaged result: a message, no exception
    broken = viewer.add_image(np.zeros((4, 4, 3), np.uint8), rgb=True, name="broken")
    broken.metadata = {METADATA_KEY: {"version": 99}}
    widget.layer = broken
    assert "unknown version" in widget._status.value
    assert not widget._strength.enabled
    viewer.layers.remove(broken)
    viewer.layers.remove(layer)
    assert widget.layer is None


def _big_preview(viewer):
    """A two-plane 1024 x 1024 colourised layer and its Chroma blend widget, on plane 1."""
    size = 1024
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    L = np.stack([15 + 80 * xx * (0.5 + 0.5 * yy)] * 2).astype(np.float32)
    ab = np.stack(
        [np.stack([50 * np.cos(8 * yy) - 5, 60 * np.sin(7 * xx) + 10], axis=-1)] * 2
    ).astype(np.float32)
    result = LayerResult(
        L, ab, None, True, source="gray", normalization={}, weights=None, device="cpu"
    ).packed()  # as stored: the widget renders from these
    rgb = render_rgb(L, ab)  # the layer's pixels: rendered from float32, as the engine does
    layer = viewer.add_image(rgb, rgb=True, name="big colorized", metadata=result_metadata(result))
    widget = make_widget(viewer)
    viewer.dims.set_current_step(0, 1)
    return widget, layer, result.L, result.ab, rgb


def test_live_preview_of_a_1024_plane_updates_only_that_plane(viewer):
    """Slider moved -> the displayed 1024 x 1024 plane re-rendered exactly; the other plane kept.

    How fast that is, is the ``perf`` test below (deselected by default: timing on a shared CI
    machine measures the other processes).
    """
    widget, layer, L, ab, rgb = _big_preview(viewer)
    for value in (101, 140, 110):
        widget._strength.value = value
        np.testing.assert_array_equal(
            layer.data[1], render_rgb(L[1], ab[1], BlendParams(strength=value / 100))
        )
    np.testing.assert_array_equal(layer.data[0], rgb[0])


@pytest.mark.perf
def test_live_preview_of_a_1024_plane_is_fast(viewer):
    """Slider moved -> the displayed 1024 x 1024 plane re-rendered and refreshed.

    The issue asks for 50 ms on a 2-core CPU. Measured here: about 40-60 ms of CPU on one
    thread (so about 25-35 ms with torch's default two threads on an idle machine). Timed on one
    thread, as CPU time of this thread; a ``perf`` test, for a quiet machine (``pytest -m perf``,
    values printed with -s): on a shared, busy one multi-threaded ops wait for descheduled
    OpenMP threads and the timing measures the other processes.
    """
    import torch

    widget, layer, L, ab, rgb = _big_preview(viewer)
    widget._strength.value = 101  # first move: copies the layer's data, builds the gamut table
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wall, cpu = [], []
        for value in (120, 140, 90, 160, 130, 110):
            t0, c0 = time.perf_counter(), time.thread_time()
            widget._strength.value = value
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    finally:
        torch.set_num_threads(threads)
    print(
        f"\nslider -> 1024x1024 plane updated (1 thread): CPU best {1e3 * min(cpu):.1f} ms, "
        f"median {1e3 * np.median(cpu):.1f} ms; wall best {1e3 * min(wall):.1f} ms"
    )
    np.testing.assert_array_equal(layer.data[1], render_rgb(L[1], ab[1], BlendParams(strength=1.1)))
    np.testing.assert_array_equal(layer.data[0], rgb[0])
    assert min(cpu) < 0.08
    assert min(wall) < 0.5


def colourised_by_the_engine(viewer):
    """A real colourised stack (the tiny test generator) and the engine's own float32 result."""
    from conftest import make_generator

    from napari_chromagan import colorize_layer
    from napari_chromagan.engine.colorize import Colorizer

    yy, xx = np.mgrid[0:40, 0:56]
    gray = np.stack([(120 + 100 * np.sin(xx / (6 + p)) * np.cos(yy / 9)) for p in range(3)])
    source = viewer.add_image(gray.astype(np.uint8), name="gray")
    colorizer = Colorizer(make_generator(), "cpu")
    layer = colorize_layer(source, viewer, colorizer, with_class=False)
    return layer, colorizer.colorize(source.data, with_class=False)


def test_on_a_colourised_layer_the_blend_matches_float32_within_tolerance(viewer):
    layer, engine = colourised_by_the_engine(viewer)
    widget = make_widget(viewer)
    assert widget.layer is layer and widget._status.value == "showing the model's output"
    np.testing.assert_array_equal(layer.data, engine.rgb)  # neutral: the engine's own pixels
    viewer.dims.set_current_step(0, 1)
    widget._strength.value = 150
    widget._hue.value = 40
    expected = render_rgb(engine.L[1], engine.ab[1], BlendParams(strength=1.5, hue_degrees=40))
    levels = np.abs(layer.data[1].astype(int) - expected).max(axis=-1)
    # measured on photographs (bench/bench_layer_memory.py): at most 2 levels on 1.4 % of pixels
    assert levels.max() <= 2 and (levels > 0).mean() <= 0.03
    assert np.abs(layer.data[1].astype(int) - engine.rgb[1]).max() > 10  # it did change
    assert widget.reset() is None
    np.testing.assert_array_equal(layer.data, engine.rgb)
