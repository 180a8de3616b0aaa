"""The scores of :mod:`training.evaluate`: the authors' protocol at S x S, the plugin's
full-resolution output, and the means over images, each beside the no-colour floor.

The protocol and its departures from the authors' script are described in
:mod:`training.evaluate`; training's validation scores its held-out images with
:func:`score_network_size` too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_chromagan.color.lab import lab_to_rgb_uint8, rgb_to_lab, rgb_to_luminance_L
from napari_chromagan.color.render import render_lab
from napari_chromagan.engine.colorize import Colorizer

from .metrics import colourfulness, psnr, ssim

__all__ = ["full_resolution", "score_network_size", "squash", "summarise"]

_CLASS_KEYS = ("class_top1_in_teacher_top5", "class_top1_in_teacher_top5_at_network_size")


def squash(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: anisotropic bilinear, no antialiasing (cv2's)."""
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return t[0].permute(1, 2, 0).add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).numpy()


def _lab_to_rgb8(L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """L (N, S, S) and ab (N, 2, S, S) -> uint8 RGB (N, S, S, 3), gamut-fitted as the plugin does."""
    return render_lab(L, ab, dim=-3).permute(0, 2, 3, 1).cpu().numpy()


def _predict_at(
    colorizer: Colorizer, L: torch.Tensor, size: int, with_class: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predicted ab (N, 2, S, S) for L (N, S, S) in L* units, and the class distribution if asked.

    At the network's own size this is one network call, as the authors. At another size (a
    128-pixel model scored in the 224 protocol) the L is resized to the network (antialiased) and
    the chroma bilinearly back, as the plugin's engine does.
    """
    x = (L / 100.0)[:, None].float()
    model_size = colorizer.config.image_size
    if size == model_size:
        return colorizer.predict(x, with_class=with_class)
    small = F.interpolate(
        x, size=(model_size, model_size), mode="bilinear", align_corners=False, antialias=True
    )
    ab, probs = colorizer.predict(small.clamp_(0.0, 1.0), with_class=with_class)
    return F.interpolate(ab, size=(size, size), mode="bilinear", align_corners=False), probs


def score_network_size(
    colorizer: Colorizer, images: list[np.ndarray], size: int | None = None, teacher: Any = None
) -> list[dict[str, float]]:
    """The authors' protocol at ``size`` x ``size`` for uint8 RGB (H, W, 3) ``images``: one network call.

    Each image is squashed to the size (an image already that size is kept as it is); returns one
    dict per image with ``psnr_S``, ``psnr_S_floor``, ``ssim_S``, ``ssim_S_floor`` (S = ``size``,
    default the network's), ``cf``, ``cf_truth``, ``cf_floor`` (colourfulness), the mean a*, b*
    (``a_mean``, ``a_mean_truth``, ``b_mean``, ``b_mean_truth``) and, with a ``teacher``
    (training.teacher.Teacher), ``class_top1_in_teacher_top5``. Training's validation scores
    its held-out images with this.
    """
    size = colorizer.config.image_size if size is None else size
    small = torch.from_numpy(
        np.stack([rgb if rgb.shape[:2] == (size, size) else squash(rgb, size) for rgb in images])
    )
    lab = rgb_to_lab(small.double() / 255.0, dim=-1)  # (N, S, S, 3) float64
    L = lab[..., 0]
    ab_truth = lab[..., 1:].permute(0, 3, 1, 2)
    ab_pred, probs = _predict_at(colorizer, L, size, with_class=teacher is not None)
    agree = {} if teacher is None else _teacher_agreement(colorizer, teacher, small, probs, size)
    ab_mean_pred = ab_pred.double().cpu().mean(dim=(2, 3))  # (N, 2): a*, b*
    ab_mean_truth = ab_truth.mean(dim=(2, 3))
    truth = _lab_to_rgb8(L, ab_truth)
    pred = _lab_to_rgb8(L, ab_pred.double().cpu())
    floor = _lab_to_rgb8(L, torch.zeros_like(ab_truth))
    rows = []
    for i in range(len(images)):
        rows.append(
            {
                f"psnr_{size}": psnr(pred[i], truth[i]),
                f"psnr_{size}_floor": psnr(floor[i], truth[i]),
                f"ssim_{size}": ssim(pred[i], truth[i]),
                f"ssim_{size}_floor": ssim(floor[i], truth[i]),
                "cf": colourfulness(pred[i]),
                "cf_truth": colourfulness(truth[i]),
                "cf_floor": colourfulness(floor[i]),
                "a_mean": float(ab_mean_pred[i, 0]),
                "a_mean_truth": float(ab_mean_truth[i, 0]),
                "b_mean": float(ab_mean_pred[i, 1]),
                "b_mean_truth": float(ab_mean_truth[i, 1]),
                **{key: float(values[i]) for key, values in agree.items()},
            }
        )
    return rows


def _teacher_agreement(
    colorizer: Colorizer, teacher: Any, small: torch.Tensor, probs: torch.Tensor, size: int
) -> dict[str, list[bool]]:
    """Per image, whether the class head's top-1 is among the teacher's top 5 on the colour
    image ``small`` (uint8 (N, S, S, 3)): at ``size``, and at the network's size when it differs."""
    top1 = probs.cpu().argmax(dim=1, keepdim=True)
    rgb = small.permute(0, 3, 1, 2).float() / 255.0
    sizes = {"class_top1_in_teacher_top5": size}
    if (
        colorizer.config.image_size != size
    ):  # also as in training: the teacher at the network's size
        sizes["class_top1_in_teacher_top5_at_network_size"] = colorizer.config.image_size
    agree: dict[str, list[bool]] = {}
    for key, side in sizes.items():
        seen = (
            rgb
            if side == size
            else F.interpolate(
                rgb, size=(side, side), mode="bilinear", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)
        )
        top5 = (
            teacher(torch.zeros_like(seen[:, :1]), seen.to(colorizer.device))
            .cpu()
            .topk(5, dim=1)
            .indices
        )
        agree[key] = (top5 == top1).any(dim=1).tolist()
    return agree


def full_resolution(colorizer: Colorizer, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plugin's full-resolution output for the image's own L*, and the gray floor of that L*."""
    L = rgb_to_luminance_L(torch.from_numpy(rgb).float() / 255.0, dim=-1)  # (H, W) float32
    result = colorizer.colorize(
        L.numpy(), normalization="manual", value_range=(0.0, 100.0), rgb=False, with_class=False
    )
    floor = lab_to_rgb_uint8(
        torch.stack([L, torch.zeros_like(L), torch.zeros_like(L)], dim=-1), dim=-1
    )
    return result.rgb, floor.numpy()


def summarise(rows: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """The means over ``rows`` (:func:`score_network_size` rows with full-resolution scores).

    Maps ``psnr_S``, ``ssim_S`` (S = ``size``), ``psnr_full`` and ``ssim_full`` to
    ``{"model": mean, "floor": mean}``, ``colourfulness`` to ``{"model", "truth", "floor"}``
    (means, at S x S), and ``delta_cf`` to the mean ΔCF = CF - CF(truth) of ``{"model",
    "floor"}``, ``a_mean`` and ``b_mean`` to the mean a*, b* of ``{"model", "truth", "floor"}``
    (a cast shows there), and with a teacher ``class_top1_in_teacher_top5`` to ``{"model":
    fraction}``. PSNR in dB (``inf`` for a perfect image, which then makes the mean ``inf``).
    """

    def mean(key: str) -> float:
        return float(np.mean([row[key] for row in rows]))

    def mean_delta(key: str) -> float:
        return float(np.mean([row[key] - row["cf_truth"] for row in rows]))

    metrics: dict[str, dict[str, float]] = {}
    for name in (f"psnr_{size}", f"ssim_{size}", "psnr_full", "ssim_full"):
        metrics[name] = {"model": mean(name), "floor": mean(f"{name}_floor")}
    metrics["colourfulness"] = {
        "model": mean("cf"),
        "truth": mean("cf_truth"),
        "floor": mean("cf_floor"),
    }
    metrics["delta_cf"] = {"model": mean_delta("cf"), "floor": mean_delta("cf_floor")}
    # a colour cast (sepia) shows as mean a*, b* away from the truth's
    for channel in ("a", "b"):
        metrics[f"{channel}_mean"] = {
            "model": mean(f"{channel}_mean"),
            "truth": mean(f"{channel}_mean_truth"),
            "floor": 0.0,
        }
    for key in _CLASS_KEYS:
        if rows and key in rows[0]:
            metrics[key] = {"model": mean(key)}
    return metrics
