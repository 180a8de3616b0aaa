"""colorize_layer and its parts: layers in, a new RGB layer out; no Qt, no window."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import make_generator
from napari.components import ViewerModel
from napari.layers import Image, Labels, Points
from skimage.color import rgb2lab

from napari_chromagan import colorize_layer
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.errors import Cancelled, WeightsNotFoundError
from napari_chromagan.napari.layer_result import get_layer_result
from napari_chromagan.napari.layers import (
    MemoryFallbackWarning,
    Progress,
    clear_colorizer_cache,
    is_out_of_memory,
    iter_run_request,
    load_colorizer,
    prepare_request,
    run_with_fallback,
)
from napari_chromagan.weights.checkpoint import save_checkpoint


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_colorizer_cache()
    yield
    clear_colorizer_cache()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_checkpoint(
        tmp_path_factory.mktemp("weights") / "tiny.pt",
        make_generator(),
        {"class_head_trained": False},
    )


def gradient(shape, dtype=np.uint16, high=4000, seed=0):
    """A smooth ramp with some noise, in ``dtype``."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, shape[-1])[None, :] * np.linspace(0.3, 1, shape[-2])[:, None]
    values = np.broadcast_to(ramp, shape) * high + rng.normal(0, high / 50, shape)
    return np.clip(values, 0, np.iinfo(dtype).max).astype(dtype)


def lab_L(rgb):
    return rgb2lab(rgb)[..., 0]


def normalised_L(data, norm):
    return (
        np.clip((data.astype(np.float64) - norm["low"]) / (norm["high"] - norm["low"]), 0, 1) * 100
    )


def test_output_layer_values_metadata_and_transforms(weights):
    data = gradient((48, 56))
    src = Image(
        data,
        name="cells",
        scale=(0.5, 0.25),
        translate=(10.0, -3.0),
        rotate=20.0,
        shear=[0.1],
        axis_labels=("y", "x"),
        units=("um", "um"),
        metadata={"note": "keep me"},
    )
    before = data.tobytes()
    out = colorize_layer(src, weights=weights, device="cpu", batch_size=2)

    assert isinstance(out, Image) and out.rgb
    assert out.name == "cells colorized"
    assert out.data.dtype == np.uint8 and out.data.shape == (48, 56, 3)
    result = get_layer_result(out)
    assert result.source == "cells" and result.plane is None and result.device == "cpu"
    assert result.weights == str(weights) and result.class_head_trained is False
    assert result.normalization["mode"] == "percentile"
    assert result.L.shape == (48, 56) and result.ab.shape == (48, 56, 2)
    assert result.class_probs.shape == (1000,)
    # the output's lightness is the normalised input's
    assert np.abs(lab_L(out.data) - normalised_L(data, result.normalization)).max() < 1.0
    # and it has colour
    assert np.abs(rgb2lab(out.data)[..., 1:]).mean() > 1.0
    # transforms, labels and units copied
    np.testing.assert_allclose(out.scale, src.scale)
    np.testing.assert_allclose(out.translate, src.translate)
    np.testing.assert_allclose(out.rotate, src.rotate)
    np.testing.assert_allclose(out.shear, src.shear)
    np.testing.assert_allclose(out.affine.affine_matrix, src.affine.affine_matrix)
    assert out.axis_labels == ("y", "x") and out.units == src.units
    # the source is untouched
    assert src.data is data and data.tobytes() == before
    assert src.name == "cells" and src.metadata == {"note": "keep me"}


def test_rgb_source_is_recoloured_from_its_luminance(weights):
    rng = np.random.default_rng(1)
    rgb = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    src = Image(rgb, name="photo", rgb=True)
    out = colorize_layer(src, weights=weights, device="cpu")
    assert out.data.shape == rgb.shape
    assert np.abs(lab_L(out.data) - lab_L(rgb)).max() < 1.0
    assert src.data is rgb


def test_current_plane_matches_the_whole_stack_run(weights):
    stack = gradient((4, 3, 24, 32), seed=2)
    src = Image(
        stack,
        name="stack",
        scale=(2.0, 3.0, 0.5, 0.25),
        translate=(1.0, 2.0, 3.0, 4.0),
        axis_labels=("t", "z", "y", "x"),
        units=("s", "um", "nm", "nm"),
    )
    whole = colorize_layer(src, weights=weights, device="cpu", normalization="dtype", batch_size=5)
    plane = colorize_layer(src, weights=weights, device="cpu", normalization="dtype", plane=(2, 1))

    assert whole.data.shape == (4, 3, 24, 32, 3)
    assert plane.data.shape == (24, 32, 3)
    np.testing.assert_array_equal(plane.data, whole.data[2, 1])
    result = get_layer_result(plane)
    assert result.plane == (2, 1) and result.L.shape == (24, 32)
    assert result.class_probs.shape == (1000,)
    assert get_layer_result(whole).class_probs.shape == (4, 3, 1000)
    np.testing.assert_allclose(plane.scale, (0.5, 0.25))
    np.testing.assert_allclose(plane.translate, (3.0, 4.0))
    assert plane.axis_labels == ("y", "x") and [str(u) for u in plane.units] == ["nanometer"] * 2
    np.testing.assert_allclose(whole.scale, src.scale)
    assert whole.axis_labels == src.axis_labels


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")
def test_plane_of_a_rotated_volume_keeps_its_place_in_the_world(weights):
    src = Image(
        gradient((5, 16, 20)), rotate=(30.0, 10.0, 0.0), scale=(2, 1, 1), translate=(1, 2, 3)
    )
    out = colorize_layer(src, weights=weights, device="cpu", plane=(3,))
    for y, x in [(0, 0), (5, 7), (15, 19)]:
        np.testing.assert_allclose(
            out.data_to_world((y, x)), src.data_to_world((3, y, x))[1:], atol=1e-9
        )


def test_plane_must_fit_the_leading_axes(weights):
    src = Image(gradient((3, 16, 16)))
    with pytest.raises(ValueError, match="one index per leading axis"):
        colorize_layer(src, weights=weights, plane=(0, 0))
    with pytest.raises(ValueError, match="outside"):
        colorize_layer(src, weights=weights, plane=(3,))


@pytest.mark.parametrize("layer", [Labels(np.zeros((8, 8), np.int32)), Points(np.zeros((2, 2)))])
def test_other_layer_types_are_refused(layer, weights):
    with pytest.raises(TypeError, match="needs a napari Image layer"):
        colorize_layer(layer, weights=weights)


def test_no_weights_says_how_to_get_them():
    with pytest.raises(WeightsNotFoundError, match="import-weights"):
        colorize_layer(Image(gradient((16, 16))))


def test_viewer_run_twice_updates_the_same_layer(weights):
    viewer = ViewerModel()
    src = viewer.add_image(gradient((3, 20, 24)), name="vol")
    other = viewer.add_image(gradient((20, 24)), name="other")
    first = colorize_layer(src, viewer, weights, "cpu")
    assert [layer.name for layer in viewer.layers] == ["vol", "other", "vol colorized"]
    viewer.layers.move(2, 1)
    src.data = gradient((3, 20, 24), seed=5)
    second = colorize_layer(src, viewer, weights, "cpu")
    assert second is first
    assert [layer.name for layer in viewer.layers] == ["vol", "vol colorized", "other"]
    np.testing.assert_array_equal(
        get_layer_result(second).L, get_layer_result(colorize_layer(src, None, weights, "cpu")).L
    )

    # a plane run replaces the stack output at the same place (its dimensionality changes)
    third = colorize_layer(src, viewer, weights, "cpu", plane=(1,))
    assert third is not first and third.ndim == 2
    assert [layer.name for layer in viewer.layers] == ["vol", "vol colorized", "other"]
    # an unrelated layer with the output's name is not overwritten
    colorize_layer(other, viewer, weights, "cpu")
    assert len(viewer.layers) == 4


def test_dask_and_multiscale_sources(weights):
    da = pytest.importorskip("dask.array")
    stack = gradient((6, 32, 32), np.uint8, high=200, seed=3)
    lazy = Image(da.from_array(stack, chunks=(1, 32, 32)), name="lazy")
    out = colorize_layer(lazy, weights=weights, device="cpu", batch_size=4)
    eager = colorize_layer(Image(stack), weights=weights, device="cpu", batch_size=4)
    np.testing.assert_array_equal(out.data, eager.data)
    assert isinstance(out.data, np.ndarray)

    pyramid = Image([stack[0], stack[0, ::2, ::2]], multiscale=True, name="pyr", scale=(0.5, 0.5))
    with pytest.warns(UserWarning, match="highest-resolution level"):
        out = colorize_layer(pyramid, weights=weights, device="cpu")
    assert out.data.shape == (32, 32, 3) and not out.multiscale
    np.testing.assert_array_equal(out.data, eager.data[0])
    np.testing.assert_allclose(out.scale, (0.5, 0.5))


def test_weights_are_loaded_once_while_the_file_is_unchanged(weights, tmp_path, monkeypatch):
    import napari_chromagan.weights.checkpoint as checkpoint

    loads = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(
        checkpoint, "load_checkpoint", lambda p, **k: loads.append(p) or real(p, **k)
    )
    src = Image(gradient((16, 16)))
    colorize_layer(src, weights=weights, device="cpu")
    colorize_layer(src, weights=weights, device="auto")  # "auto" is the CPU here: same entry
    assert len(loads) == 1
    assert load_colorizer(weights, "cpu") is load_colorizer(weights, "cpu")

    copy = save_checkpoint(tmp_path / "copy.pt", make_generator(seed=1))
    first = load_colorizer(copy, "cpu")
    save_checkpoint(copy, make_generator(seed=2), {"variant": "changed"})  # new mtime
    second = load_colorizer(copy, "cpu")
    assert second is not first and second.metadata == {"variant": "changed"}


def test_a_colorizer_can_be_passed_instead_of_weights():
    colorizer = Colorizer(make_generator(), "cpu", metadata={"class_head_trained": True})
    out = colorize_layer(Image(gradient((16, 16))), weights=colorizer, with_class=False)
    result = get_layer_result(out)
    assert (
        result.class_head_trained is True and result.class_probs is None and result.weights is None
    )


# ------------------------------------------------------------------ out of memory


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def _forward_out_of_memory_above(monkeypatch, limit, error=None):
    """Make the network raise an out-of-memory error for batches of more than ``limit`` planes."""
    sizes = []
    real = Colorizer.predict

    def predict(self, L, with_class=True):
        sizes.append(L.shape[0])
        if L.shape[0] > limit:
            raise error or torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2 GiB"
            )
        return real(self, L, with_class=with_class)

    monkeypatch.setattr(Colorizer, "predict", predict)
    return sizes


def test_out_of_memory_halves_the_batch(monkeypatch):
    colorizer = Colorizer(make_generator(), "cpu")
    stack = gradient((5, 16, 16))
    expected = colorizer.colorize(stack, batch_size=2)
    sizes = _forward_out_of_memory_above(monkeypatch, 2)
    with pytest.warns(MemoryFallbackWarning, match="finished with batch size 2"):
        result, used = run_with_fallback(lambda d: colorizer, stack, "cpu", batch_size=8)
    # 5 planes at batch 8 (one call of 5), at batch 4 (fails at 4), then batches of 2, 2, 1
    assert sizes == [5, 4, 2, 2, 1] and used is colorizer
    np.testing.assert_array_equal(result.rgb, expected.rgb)


def test_out_of_memory_on_the_gpu_falls_back_to_the_cpu():
    tried = []
    gpu = Colorizer(make_generator(), "cpu")
    gpu.device = torch.device("cuda", 0)  # a stand-in whose engine fails before touching it

    def out_of_memory(image, *, batch_size, **kwargs):
        tried.append(("cuda", batch_size))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        yield  # a generator, like the engine's

    gpu.iter_colorize = out_of_memory
    cpu = Colorizer(make_generator(), "cpu")
    real = cpu.iter_colorize

    def on_cpu(image, *, batch_size, **kwargs):
        tried.append(("cpu", batch_size))
        return (yield from real(image, batch_size=batch_size, **kwargs))

    cpu.iter_colorize = on_cpu
    factory = {"cuda:0": gpu, "cpu": cpu}.__getitem__
    messages = []
    result, used = run_with_fallback(
        factory, gradient((3, 16, 16)), "cuda:0", batch_size=4, warn=messages.append
    )
    assert tried == [("cuda", 4), ("cuda", 2), ("cuda", 1), ("cpu", 4)]
    assert used is cpu and result.device == "cpu"
    assert len(messages) == 1 and "running on the CPU instead" in messages[0]
    # without a warn callback it is a Python warning (the widget shows it as a notification)
    with pytest.warns(MemoryFallbackWarning, match="on the CPU instead"):
        run_with_fallback(factory, gradient((16, 16)), "cuda:0")


def test_out_of_memory_on_the_cpu_at_batch_one_is_a_memory_error(monkeypatch):
    error = RuntimeError(
        "DefaultCPUAllocator: not enough memory: you tried to allocate... out of memory"
    )
    sizes = _forward_out_of_memory_above(monkeypatch, 0, error)
    colorizer = Colorizer(make_generator(), "cpu")
    with pytest.raises(MemoryError, match="current plane"):
        run_with_fallback(lambda d: colorizer, gradient((16, 16)), batch_size=2)
    assert sizes == [1, 1]  # one plane at batch 2, then at batch 1


def test_other_errors_are_not_retried(monkeypatch):
    sizes = _forward_out_of_memory_above(monkeypatch, 0, RuntimeError("something else"))
    colorizer = Colorizer(make_generator(), "cpu")
    with pytest.raises(RuntimeError, match="something else"):
        run_with_fallback(lambda d: colorizer, gradient((16, 16)))
    assert sizes == [1]


# ------------------------------------------------------------------ the worker's generator


def drain(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def test_iter_run_request_yields_progress_and_returns_the_output(weights):
    request = prepare_request(Image(gradient((5, 16, 16)), name="s"))
    assert request.planes == 5
    events, output = drain(iter_run_request(request, weights=weights, device="cpu", batch_size=2))
    assert events == [Progress(0, 5), Progress(2, 5), Progress(4, 5), Progress(5, 5)]
    assert output.result.rgb.shape == (5, 16, 16, 3) and output.class_head_trained is False
    assert not any(t.name == "napari-chromagan-colorize" for t in threading.enumerate())


def test_iter_run_request_raises_the_engines_errors(weights):
    request = prepare_request(Image(gradient((4, 16, 16))))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        drain(iter_run_request(request, weights=weights, device="cpu", cancel=cancel))
    with pytest.raises(WeightsNotFoundError):
        drain(iter_run_request(request))


def _counted_predict(monkeypatch):
    calls = []
    real = Colorizer.predict

    def predict(self, L, with_class=True):
        calls.append(L.shape[0])
        return real(self, L, with_class=with_class)

    monkeypatch.setattr(Colorizer, "predict", predict)
    return calls


def test_closing_the_generator_early_cancels_the_run(weights, monkeypatch):
    calls = _counted_predict(monkeypatch)
    cancel = threading.Event()
    generator = iter_run_request(
        prepare_request(Image(gradient((50, 16, 16)))),
        weights=weights,
        device="cpu",
        batch_size=1,
        cancel=cancel,
    )
    assert next(generator) == Progress(0, 50)
    assert next(generator) == Progress(1, 50) and next(generator) == Progress(2, 50)
    generator.close()  # what worker.quit() does: no batch runs after it
    assert cancel.is_set() and calls == [1, 1]
    with pytest.raises(StopIteration):
        next(generator)


def test_setting_cancel_stops_the_run_before_its_next_batch(weights, monkeypatch):
    calls = _counted_predict(monkeypatch)
    cancel = threading.Event()
    generator = iter_run_request(
        prepare_request(Image(gradient((5, 16, 16)))),
        weights=weights,
        device="cpu",
        batch_size=2,
        cancel=cancel,
    )
    assert [next(generator), next(generator)] == [Progress(0, 5), Progress(2, 5)]
    cancel.set()
    with pytest.raises(Cancelled, match="after 2 of 5 planes"):
        next(generator)
    assert calls == [2]
