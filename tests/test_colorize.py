from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import HANG_S
from skimage.color import rgb2lab

from napari_chromagan import Colorizer, select_device
from napari_chromagan.color.lab import rgb_to_lab
from napari_chromagan.engine.planes import resize_to_network
from napari_chromagan.errors import Cancelled, DeviceError, UnsupportedImageError
from napari_chromagan.weights.checkpoint import save_checkpoint


@pytest.fixture
def colorizer(tiny_generator) -> Colorizer:
    return Colorizer(tiny_generator, device="cpu")


def output_lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb)[..., 0]


def assert_lightness_kept(result, where=None):
    err = np.abs(output_lightness(result.rgb) - result.L)
    if where is not None:
        err = err[where]
    assert err.max() < 0.5, err.max()


def test_odd_sized_uint16_image(colorizer):
    rng = np.random.default_rng(0)
    image = rng.integers(1000, 40000, (97, 131), dtype=np.uint16)
    r = colorizer.colorize(image)
    assert r.rgb.shape == (97, 131, 3) and r.rgb.dtype == np.uint8
    assert r.L.shape == (97, 131) and r.L.dtype == np.float32
    assert r.ab.shape == (97, 131, 2) and r.ab.dtype == np.float32
    assert r.class_probs.shape == (1000,)
    assert r.class_probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert r.normalization.mode == "percentile"
    expected = (
        np.clip((image - r.normalization.low) / (r.normalization.high - r.normalization.low), 0, 1)
        * 100
    )
    np.testing.assert_allclose(r.L, expected, atol=1e-3)
    assert_lightness_kept(r)
    assert r.missing is None
    # the model's colours reach the image: it is not gray
    assert np.abs(r.ab).mean() > 5
    assert np.abs(r.rgb[..., 0].astype(int) - r.rgb[..., 2]).mean() > 2


def test_float_stack_is_colourised_plane_by_plane(colorizer):
    rng = np.random.default_rng(1)
    stack = rng.random((5, 96, 130)).astype(np.float32)
    r = colorizer.colorize(stack, batch_size=2, value_range=(0, 1))
    assert r.rgb.shape == (5, 96, 130, 3) and r.class_probs.shape == (5, 1000)
    assert r.stack_shape == (5,)
    assert_lightness_kept(r)
    single = colorizer.colorize(stack[3], value_range=(0, 1))
    np.testing.assert_allclose(r.ab[3], single.ab, atol=1e-3)
    np.testing.assert_allclose(r.class_probs[3], single.class_probs, atol=1e-5)
    assert np.abs(r.rgb[3].astype(int) - single.rgb).max() <= 1


def test_four_dimensional_stack_and_dask(colorizer):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(2)
    data = rng.integers(0, 255, (2, 3, 40, 50), dtype=np.uint8)
    r = colorizer.colorize(da.from_array(data, chunks=(1, 1, 40, 50)), batch_size=4)
    ref = colorizer.colorize(data, batch_size=4)
    assert r.rgb.shape == (2, 3, 40, 50, 3) and r.class_probs.shape == (2, 3, 1000)
    np.testing.assert_array_equal(r.rgb, ref.rgb)


def test_rgb_image_is_recoloured_from_its_own_lightness(colorizer):
    from skimage.data import coffee

    image = coffee()[::4, ::4]
    r = colorizer.colorize(image)
    assert r.rgb.shape == image.shape
    np.testing.assert_allclose(r.L, rgb2lab(image)[..., 0], atol=1e-3)
    assert_lightness_kept(r)
    rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(colorizer.colorize(rgba).rgb, r.rgb)


def test_one_pixel_image(colorizer):
    r = colorizer.colorize(np.array([[77]], np.uint8))
    assert r.rgb.shape == (1, 1, 3)
    assert r.L[0, 0] == pytest.approx(77 / 255 * 100, abs=1e-4)
    assert_lightness_kept(r)


@pytest.mark.parametrize("shape", [(1, 700), (700, 1), (3, 1000)])
def test_extreme_aspect_ratios(colorizer, shape):
    image = np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8)
    r = colorizer.colorize(image)
    assert r.rgb.shape == (*shape, 3)
    assert_lightness_kept(r)


def test_nan_and_inf_pixels_come_out_gray(colorizer):
    rng = np.random.default_rng(4)
    image = rng.random((60, 70)).astype(np.float64)
    image[10:20, 5:15] = np.nan
    image[0, 0] = np.inf
    image[1, 1] = -np.inf
    r = colorizer.colorize(image)
    assert r.missing is not None and r.missing.sum() == 102
    gray = r.rgb[r.missing]
    assert (gray.max(axis=1) - gray.min(axis=1) <= 1).all()
    np.testing.assert_array_equal(r.ab[r.missing], 0)
    assert np.isfinite(r.L).all()
    assert_lightness_kept(r, ~r.missing)


def test_strips_give_the_same_result_as_one_block(colorizer):
    image = np.random.default_rng(5).integers(0, 65535, (300, 257), dtype=np.uint16)
    whole = colorizer.colorize(image)
    colorizer.strip_pixels = 1000  # a few rows per strip
    strips = colorizer.colorize(image)
    np.testing.assert_array_equal(strips.rgb, whole.rgb)
    np.testing.assert_array_equal(strips.ab, whole.ab)
    np.testing.assert_array_equal(strips.L, whole.L)


@pytest.mark.parametrize(
    "shape", [(5, 40, 33), (3, 100, 90)]
)  # smaller and larger than the network's 64
def test_a_batch_processed_as_one_block_equals_plane_by_plane(colorizer, shape):
    """Small planes of a batch go through upsampling and Lab -> RGB together; nothing may change."""
    image = np.random.default_rng(7).random(shape).astype(np.float32)
    image[-1, 3:9, 4:7] = np.nan  # missing pixels in one plane only
    together = colorizer.colorize(image, batch_size=2)
    colorizer.strip_pixels = (
        200  # no two planes fit in a strip: each plane alone, in strips of rows
    )
    apart = colorizer.colorize(image, batch_size=2)
    np.testing.assert_array_equal(together.rgb, apart.rgb)
    np.testing.assert_array_equal(together.ab, apart.ab)
    assert together.missing.sum() == 18 and not together.missing[:-1].any()
    np.testing.assert_array_equal(together.ab[together.missing], 0)
    norm = together.normalization
    alone = colorizer.colorize(image[1], normalization="manual", value_range=(norm.low, norm.high))
    np.testing.assert_array_equal(alone.rgb, together.rgb[1])


def test_upsampled_ab_equals_bilinear_resize_of_the_prediction(colorizer):
    image = np.random.default_rng(6).integers(0, 255, (150, 90), dtype=np.uint8)
    L_small = resize_to_network(torch.from_numpy((image / 255 * 100).astype(np.float32))[None], 64)
    ab_small, _ = colorizer.predict(L_small, with_class=False)
    expected = F.interpolate(ab_small, size=(150, 90), mode="bilinear", align_corners=False)[0]
    r = colorizer.colorize(image)
    np.testing.assert_allclose(r.ab, expected.permute(1, 2, 0).numpy(), atol=1e-3)


def test_progress_and_network_calls(colorizer):
    calls = []
    colorizer.generator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    seen = []
    colorizer.colorize(
        np.zeros((7, 20, 20), np.uint8), batch_size=3, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert calls == [3, 3, 1]  # the network runs exactly once per plane


def test_cancel_stops_at_the_next_batch(colorizer):
    cancel = threading.Event()
    calls = []
    colorizer.generator.register_forward_hook(lambda m, i, o: calls.append(1))

    def progress(done, total):
        if done >= 2:
            cancel.set()

    with pytest.raises(Cancelled, match="after 2 of 6 planes"):
        colorizer.colorize(
            np.zeros((6, 16, 16), np.uint8), batch_size=2, progress=progress, cancel=cancel
        )
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((0, 5), np.uint8), {}, "empty"),
        (np.zeros((4, 0, 5), np.uint8), {}, "empty"),
        (np.zeros((4, 5), bool), {}, "bool"),
        (np.zeros((4, 5), np.complex64), {}, "complex"),
        (np.zeros((4, 5), object), {}, "object"),
        (np.zeros(5, np.uint8), {}, "at least a 2D"),
        (np.zeros((4, 5, 2), np.uint8), {"rgb": True}, "length 3"),
        ([[1, 2], [3, 4]], {}, "numpy or dask"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(colorizer, image, kwargs, match):
    with pytest.raises(UnsupportedImageError, match=match):
        colorizer.colorize(image, **kwargs)


def test_from_checkpoint_and_without_class_head(tmp_path, tiny_generator):
    path = save_checkpoint(tmp_path / "w.pt", tiny_generator, {"class_head_trained": False})
    c = Colorizer.from_checkpoint(path, device="cpu")
    assert c.weights == str(path) and c.class_head_trained is False
    r = c.colorize(np.zeros((30, 30), np.uint8) + 128, with_class=False)
    assert r.class_probs is None and r.weights == str(path)


def test_device_selection():
    dev, info = select_device("auto")
    assert dev.type in {"cpu", "cuda", "mps"} and "picked automatically" in info
    assert select_device("cpu")[0] == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="0 CUDA device"):
            select_device("cuda:3")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")


def test_colour_helpers_agree_on_engine_output(colorizer):
    r = colorizer.colorize(np.random.default_rng(7).integers(0, 255, (32, 32), dtype=np.uint8))
    ours = rgb_to_lab(torch.from_numpy(r.rgb / 255.0), dim=-1).numpy()
    np.testing.assert_allclose(ours, rgb2lab(r.rgb), atol=1e-3)


@pytest.mark.slow
def test_10000_square_uint16_needs_less_than_3_gb_of_extra_memory(tmp_path):
    """Peak RSS of a fresh process, minus what it had before colourising (input included)."""
    script = textwrap.dedent(
        """
        import resource, sys, numpy as np, torch
        sys.path.insert(0, "tests")
        from conftest import make_generator
        from napari_chromagan import Colorizer
        c = Colorizer(make_generator(), device="cpu")
        c.colorize(np.zeros((64, 64), np.uint16))  # warm up allocators and kernels
        image = np.random.default_rng(0).integers(0, 65535, (10000, 10000), dtype=np.uint16)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = c.colorize(image, with_class=False)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert r.rgb.shape == (10000, 10000, 3)
        print((after - before) / 2**20)
        """
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=True,
    )
    extra_gb = float(out.stdout.strip().splitlines()[-1])
    # the outputs alone (L, ab, rgb) are 1.5 GB
    assert extra_gb < 3.0, f"{extra_gb:.2f} GB"
