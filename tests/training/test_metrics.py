"""training.metrics: PSNR and SSIM agree with skimage; colourfulness checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from training.metrics import colourfulness, delta_colourfulness, psnr, ssim

WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # (512, 512, 3) uint8


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).round().astype(np.uint8)


def test_psnr_agrees_with_skimage_on_random_uint8():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = peak_signal_noise_ratio(a, b, data_range=255)
    assert psnr(a, b) == pytest.approx(expected, rel=1e-12)
    # no uint8 wrap-around: the order of the arguments does not matter
    assert psnr(b, a) == pytest.approx(expected, rel=1e-12)


def test_psnr_by_hand_and_identical_images():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255**2 / 12
    assert psnr(a, b) == pytest.approx(10 * math.log10(12), abs=1e-12)
    assert psnr(a, a) == math.inf
    assert psnr(a.astype(float), b.astype(float) / 255, data_range=1.0) == pytest.approx(
        10 * math.log10(1 / np.mean((a / 1.0 - b / 255) ** 2))
    )


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_ssim_agrees_with_skimage_on_random_images():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    b = _noisy(a, 30.0)
    expected = structural_similarity(a, b, channel_axis=-1, data_range=255, **WANG)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    assert 0.0 < ssim(a, b) < 1.0


def test_ssim_agrees_with_skimage_on_a_real_photograph(astronaut):
    noisy = _noisy(astronaut, 12.0)
    expected = structural_similarity(noisy, astronaut, channel_axis=-1, data_range=255, **WANG)
    assert ssim(noisy, astronaut) == pytest.approx(expected, rel=1e-12)
    # uint8 and float inputs give the same number
    assert ssim(noisy.astype(np.float32), astronaut.astype(np.float64)) == pytest.approx(expected)
    assert ssim(astronaut, astronaut) == pytest.approx(1.0)
    # a real difference from skimage's defaults (7x7 uniform window): the settings matter
    default = structural_similarity(noisy, astronaut, channel_axis=-1, data_range=255)
    assert abs(default - expected) > 1e-3


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 20, 3)), np.zeros((10, 20, 3)))
    with pytest.raises(ValueError, match="RGB"):
        ssim(np.zeros((20, 20)), np.zeros((20, 20)))


def test_colourfulness_by_hand():
    # rg = R - G = [100, 100, 0, 0]; yb = (R + G)/2 - B = [50, 50, 0, 0]
    # std(rg) = 50, std(yb) = 25, mean(rg) = 50, mean(yb) = 25 -> sigma = mu = sqrt(3125)
    img = np.array([[[100, 0, 0], [100, 0, 0]], [[0, 0, 0], [0, 0, 0]]], np.uint8)
    assert colourfulness(img) == pytest.approx(1.3 * math.sqrt(3125.0), rel=1e-12)
    # rg = [0, 0]; yb = [-255, 0]: std 127.5, |mean| 127.5 -> 127.5 + 0.3 * 127.5
    blue = np.array([[[0, 0, 255], [0, 0, 0]]], np.uint8)
    assert colourfulness(blue) == pytest.approx(1.3 * 127.5, rel=1e-12)


def test_colourfulness_of_gray_is_zero(astronaut):
    gray = np.repeat(astronaut.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    assert colourfulness(gray) == 0.0
    assert colourfulness(astronaut) > 20.0  # a colourful photograph


def test_colourfulness_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        colourfulness(np.zeros((4, 4)))


def test_delta_colourfulness_sign(astronaut):
    gray = astronaut.mean(axis=-1, keepdims=True)
    dull = (0.5 * astronaut + 0.5 * gray).round().astype(np.uint8)  # half the saturation
    delta = delta_colourfulness(dull, astronaut)
    assert delta < -5.0
    assert delta == pytest.approx(colourfulness(dull) - colourfulness(astronaut))
    assert delta_colourfulness(astronaut, dull) == pytest.approx(-delta)
    assert delta_colourfulness(astronaut, astronaut) == 0.0
