"""Image-quality metrics for colourisation: PSNR, SSIM and colourfulness.

All functions take RGB images as numpy arrays of shape (H, W, 3) (any leading shape for
colourfulness), uint8 or float on the 0-255 scale, and compute in float64. They return plain
Python floats.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["SSIM_MIN_SIZE", "colourfulness", "delta_colourfulness", "psnr", "ssim"]

# The 11x11 Gaussian window of Wang et al. needs images at least this large on both sides.
SSIM_MIN_SIZE = 11


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred and truth must have the same shape, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise ValueError("cannot score empty images")
    return p, t


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels.

    ``10 log10(data_range**2 / MSE)``, the MSE taken over every element, as
    ``skimage.metrics.peak_signal_noise_ratio`` and ``tf.image.psnr`` (per image) do.

    Parameters
    ----------
    pred, truth : ndarray
        Same shape, values on the scale of ``data_range`` (0-255 for 8-bit images).
    data_range : float
        The peak value.

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the images are identical.
    """
    p, t = _pair(pred, truth)
    mse = float(np.mean((p - t) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity of two RGB images (0-255), the mean over the three channels.

    ``skimage.metrics.structural_similarity`` with ``channel_axis=-1``, ``data_range=255`` and
    the settings of Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5 and population
    covariances (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``). These are
    also what ``tf.image.ssim``, the authors' metric, uses, so the numbers are comparable with
    the paper's (skimage's defaults, a 7x7 uniform window, give slightly different values).

    Parameters
    ----------
    pred, truth : ndarray
        (H, W, 3), same shape, 0-255; H and W at least :data:`SSIM_MIN_SIZE` (11).

    Returns
    -------
    float
        SSIM, at most 1 (1 for identical images).
    """
    p, t = _pair(pred, truth)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f"ssim expects (H, W, 3) RGB images, got shape {p.shape}")
    if min(p.shape[:2]) < SSIM_MIN_SIZE:
        raise ValueError(
            f"ssim needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels, got {p.shape[:2]}"
        )
    value = structural_similarity(
        p,
        t,
        channel_axis=-1,
        data_range=255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    return float(value)


def colourfulness(rgb: np.ndarray) -> float:
    """Colourfulness of an image: the M^(3) metric of Hasler & Süsstrunk (2003).

    With the opponent channels ``rg = R - G`` and ``yb = (R + G) / 2 - B`` computed on the
    gamma-encoded sRGB values on the 0-255 scale, over all pixels::

        sigma_rgyb = sqrt(std(rg)**2 + std(yb)**2)      (population standard deviations)
        mu_rgyb    = sqrt(mean(rg)**2 + mean(yb)**2)
        M          = sigma_rgyb + 0.3 * mu_rgyb

    This is the variant most colourisation papers report (also used by the widely copied
    OpenCV tutorial code): the RGB, not the CIELab, form of the metric. A gray image scores 0;
    a vivid photograph typically 50-100.

    Parameters
    ----------
    rgb : ndarray
        (..., 3), uint8 or float on the 0-255 scale.

    Returns
    -------
    float
    """
    x = np.asarray(rgb, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != 3 or x.size == 0:
        raise ValueError(
            f"colourfulness expects a non-empty (..., 3) RGB array, got shape {x.shape}"
        )
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = math.sqrt(float(rg.var()) + float(yb.var()))
    mu = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return sigma + 0.3 * mu


def delta_colourfulness(pred: np.ndarray, truth: np.ndarray) -> float:
    """ΔCF = colourfulness(pred) - colourfulness(truth).

    Negative means the prediction is duller than the truth (the usual "sepia" failure of
    regression-trained colourisers); positive, more saturated.
    """
    return colourfulness(pred) - colourfulness(truth)
