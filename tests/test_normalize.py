from __future__ import annotations

import numpy as np
import pytest

from napari_chromagan.engine.normalize import Normalization, iter_blocks, resolve_normalization


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_histogram_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (3, 37, 53), endpoint=True).astype(dtype)
    norm = resolve_normalization(image, "percentile", percentiles=(0.5, 99.5))
    low, high = np.percentile(image.astype(np.float64), (0.5, 99.5))
    assert norm.mode == "percentile"
    assert norm.low == pytest.approx(low) and norm.high == pytest.approx(high)


def test_float_percentiles_ignore_nan_and_inf():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 20, (64, 64)).astype(np.float32)
    image[:4] = np.nan
    image[5, 5] = np.inf
    norm = resolve_normalization(image)
    finite = image[np.isfinite(image)].astype(np.float64)
    assert norm.low == pytest.approx(np.percentile(finite, 0.5), rel=1e-6)
    assert norm.high == pytest.approx(np.percentile(finite, 99.5), rel=1e-6)


def test_auto_rules():
    assert resolve_normalization(np.zeros((4, 4), np.uint8)).mode == "dtype"
    assert resolve_normalization(np.arange(16, dtype=np.uint16).reshape(4, 4)).mode == "percentile"
    assert resolve_normalization(np.zeros((4, 4, 3), np.uint16), rgb=True) == Normalization(
        "dtype", 0, 65535
    )
    unit = np.random.default_rng(0).random((4, 4, 3))
    assert resolve_normalization(unit, rgb=True) == Normalization("dtype", 0.0, 1.0)
    assert resolve_normalization(unit * 7, rgb=True).mode == "percentile"
    manual = resolve_normalization(np.zeros((2, 2)), value_range=(10, 20))
    assert manual == Normalization("manual", 10.0, 20.0)


def test_apply_maps_clips_and_marks_missing():
    norm = Normalization("manual", 100.0, 300.0)
    x = np.array([[50, 100, 200], [300, 400, np.nan]], np.float64)
    out = norm.apply(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [0, 0, 0.5])
    np.testing.assert_array_equal(out[1, :2], [1, 1])
    assert np.isnan(out[1, 2])


def test_wide_integers_keep_precision():
    base = 2_000_000_000
    x = np.array([[base, base + 10, base + 20]], np.int32)
    out = Normalization("manual", float(base), float(base + 20)).apply(x)
    np.testing.assert_allclose(out, [[0, 0.5, 1]])


def test_constant_and_all_missing_images():
    assert resolve_normalization(np.full((5, 5), 7.0)).apply(np.full((1, 1), 7.0))[0, 0] == 0.5
    nan = resolve_normalization(np.full((5, 5), np.nan))
    assert (nan.low, nan.high) == (0.0, 1.0)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="value_range"):
        resolve_normalization(np.zeros((2, 2)), "manual")
    with pytest.raises(ValueError, match="high > low"):
        resolve_normalization(np.zeros((2, 2)), value_range=(5, 5))
    with pytest.raises(ValueError, match="percentiles"):
        resolve_normalization(np.zeros((2, 2)), "percentile", percentiles=(90, 10))
    with pytest.raises(ValueError, match="normalization must be"):
        resolve_normalization(np.zeros((2, 2)), "histogram")


def test_iter_blocks_covers_the_array_in_strips():
    x = np.arange(2 * 10 * 7).reshape(2, 10, 7)
    blocks = list(iter_blocks(x, 1, max_elements=21))
    assert [b.shape for b in blocks] == [(3, 7), (3, 7), (3, 7), (1, 7)] * 2
    np.testing.assert_array_equal(np.concatenate(blocks), x.reshape(20, 7))
