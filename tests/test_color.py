"""Tests for napari_chromagan.color.lab against scikit-image's reference conversions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data as skdata
from skimage.color import colorconv

from napari_chromagan.color.gamut import fit_chroma_to_gamut
from napari_chromagan.color.lab import (
    lab_to_linear_rgb,
    lab_to_rgb,
    lab_to_rgb_uint8,
    rgb_to_lab,
    rgb_to_luminance_L,
    srgb_constants,
)

DTYPES = [torch.float32, torch.float64]


def _sk_lab2rgb(lab_hwc: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # negative-z clipping warning
        return skcolor.lab2rgb(lab_hwc)


def _random_rgb(seed: int = 0, size: int = 64) -> np.ndarray:
    """(H, W, 3) float64 in [0, 1], with 0/1 corners and pure primaries in the first row."""
    rgb = np.random.default_rng(seed).random((size, size, 3))
    specials = [
        (0, 0, 0),
        (1, 1, 1),
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (1, 1, 0),
        (0, 1, 1),
        (1, 0, 1),
        (0.5, 0.5, 0.5),
        (0.04045, 0.0031308, 0.04),
    ]
    rgb[0, : len(specials)] = specials
    return rgb


def _random_lab(seed: int = 1, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.empty((size, size, 3))
    lab[..., 0] = rng.uniform(0, 100, (size, size))
    lab[..., 1:] = rng.uniform(-100, 100, (size, size, 2))
    return lab


def _to_tensor(hwc: np.ndarray, dtype: torch.dtype, dim: int) -> torch.Tensor:
    t = torch.from_numpy(hwc).to(dtype)
    return t if dim == -1 else t.permute(2, 0, 1).unsqueeze(0).repeat(2, 1, 1, 1)  # NCHW


def _to_hwc(t: torch.Tensor, dim: int) -> np.ndarray:
    t = t if dim == -1 else t[0].permute(1, 2, 0)
    return t.double().cpu().numpy()


def test_constants_match_skimage() -> None:
    m, inv, white = srgb_constants(torch.device("cpu"), torch.float64)
    np.testing.assert_array_equal(m.numpy(), colorconv.xyz_from_rgb)
    np.testing.assert_allclose(inv.numpy(), colorconv.rgb_from_xyz, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(
        white.numpy(), skcolor.xyz_tristimulus_values(illuminant="D65", observer="2")
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-3, -1])
def test_rgb_to_lab_matches_skimage(dtype: torch.dtype, dim: int) -> None:
    rgb = _random_rgb()
    out = rgb_to_lab(_to_tensor(rgb, dtype, dim), dim=dim)
    assert out.dtype == dtype
    if dim == -3:
        assert torch.equal(out[0], out[1])
    ref = skcolor.rgb2lab(rgb.astype(np.float64))
    assert np.abs(_to_hwc(out, dim) - ref).max() < 1e-3


def test_float64_is_exact_up_to_rounding() -> None:
    # catches any constant or threshold that differs from skimage's, however slightly
    rgb = np.concatenate([_random_rgb(seed=17), np.linspace(0, 1, 64 * 3).reshape(1, 64, 3)])
    lab = rgb_to_lab(torch.from_numpy(rgb), dim=-1).numpy()
    assert np.abs(lab - skcolor.rgb2lab(rgb)).max() < 1e-9
    lab = np.concatenate([_random_lab(seed=17), skcolor.rgb2lab(rgb)])
    out = lab_to_rgb(torch.from_numpy(lab), dim=-1).numpy()
    assert np.abs(out - _sk_lab2rgb(lab)).max() < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-3, -1])
def test_lab_to_rgb_matches_skimage(dtype: torch.dtype, dim: int) -> None:
    lab = _random_lab()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # we clip negative z silently
        out = lab_to_rgb(_to_tensor(lab, dtype, dim), dim=dim)
    assert out.dtype == dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert np.abs(_to_hwc(out, dim) - _sk_lab2rgb(lab)).max() < 1e-4


def test_lab_to_rgb_negative_z_is_clipped_like_skimage() -> None:
    lab = np.array([[[50.0, 0.0, 150.0], [10.0, -20.0, 120.0], [90.0, 30.0, 200.0]]])
    assert ((lab[..., 0] + 16) / 116 - lab[..., 2] / 200 < 0).all()
    out = lab_to_rgb(torch.from_numpy(lab), dim=-1)
    assert np.abs(out.numpy() - _sk_lab2rgb(lab)).max() < 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(dtype: torch.dtype) -> None:
    rgb = _to_tensor(_random_rgb(seed=3), dtype, -3)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max().item() < 1e-4


@pytest.mark.parametrize("image", ["astronaut", "coffee"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_real_images(image: str, dtype: torch.dtype) -> None:
    rgb = getattr(skdata, image)().astype(np.float64) / 255.0
    out = rgb_to_lab(_to_tensor(rgb, dtype, -3))
    assert np.abs(_to_hwc(out, -3) - skcolor.rgb2lab(rgb)).max() < 1e-3
    # real in-gamut colours are left alone by the gamut fit
    ab = out[:, 1:]
    assert torch.equal(fit_chroma_to_gamut(out[:, 0], ab), ab)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-3, -1])
def test_luminance_matches_lab(dtype: torch.dtype, dim: int) -> None:
    rgb = _to_tensor(_random_rgb(seed=5), dtype, dim)
    L = rgb_to_luminance_L(rgb, dim=dim)
    assert L.dtype == dtype
    expected = rgb_to_lab(rgb, dim=dim).select(dim, 0)
    assert L.shape == expected.shape
    assert (L - expected).abs().max().item() < 1e-4


def test_lab_to_rgb_uint8() -> None:
    lab = _random_lab(seed=11)
    out = lab_to_rgb_uint8(_to_tensor(lab, torch.float32, -1), dim=-1)
    assert out.dtype == torch.uint8
    ref = np.round(np.clip(_sk_lab2rgb(lab), 0, 1) * 255)
    assert np.abs(out.numpy().astype(np.int16) - ref).max() <= 1
    rgb8 = skdata.astronaut()
    lab = rgb_to_lab(torch.from_numpy(rgb8).double() / 255, dim=-1)
    assert torch.equal(lab_to_rgb_uint8(lab, dim=-1), torch.from_numpy(rgb8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lab_to_linear_rgb_is_lab_to_rgb_before_the_gamma(dtype: torch.dtype) -> None:
    lab = _to_tensor(_random_lab(seed=19), dtype, -3)
    linear = lab_to_linear_rgb(lab)
    assert linear.dtype == dtype and linear.shape == lab.shape
    # skimage's sRGB gamma, applied by hand: an oracle independent of color.py's encoding
    c = linear.double().numpy()
    encoded = np.where(c > 0.0031308, 1.055 * np.abs(c) ** (1 / 2.4) - 0.055, 12.92 * c)
    assert np.abs(encoded - lab_to_rgb(lab, clip=False).double().numpy()).max() < 1e-5
    assert (c < 0).any() and (c > 1).any()  # unclipped: random Lab leaves the gamut


def test_errors() -> None:
    with pytest.raises(ValueError, match="rgb needs 3 channels"):
        rgb_to_lab(torch.zeros(4, 8, 8))
    with pytest.raises(TypeError):
        rgb_to_lab(torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_gradients_are_finite() -> None:
    rgb = torch.tensor(_random_rgb(seed=2, size=16)).permute(2, 0, 1).requires_grad_()
    lab_to_rgb(rgb_to_lab(rgb), clip=False).sum().backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    rgb = _to_tensor(_random_rgb(seed=13), torch.float32, -3)
    lab = _to_tensor(_random_lab(seed=13), torch.float32, -3)
    pairs = [
        (rgb_to_lab(rgb), rgb_to_lab(rgb.cuda())),
        (rgb_to_luminance_L(rgb), rgb_to_luminance_L(rgb.cuda())),
        (lab_to_rgb(lab, clip=False), lab_to_rgb(lab.cuda(), clip=False)),
        (
            fit_chroma_to_gamut(lab[:, 0], lab[:, 1:]),
            fit_chroma_to_gamut(lab[:, 0].cuda(), lab[:, 1:].cuda()),
        ),
    ]
    for cpu, gpu in pairs[:3]:
        assert gpu.device.type == "cuda"
        assert (gpu.cpu() - cpu).abs().max().item() < 1e-4
    # bisection may take the other branch for a colour right on the boundary
    cpu, gpu = pairs[3]
    slack = lab[:, 1:].norm(dim=1, keepdim=True) * 2.0**-10 + 1e-4
    assert ((gpu.cpu() - cpu).abs() <= slack).all()
    assert ((gpu.cpu() - cpu).abs() < 1e-4).float().mean().item() > 0.99
    u8 = lab_to_rgb_uint8(lab.cuda())
    assert (u8.cpu().int() - lab_to_rgb_uint8(lab).int()).abs().max().item() <= 1
