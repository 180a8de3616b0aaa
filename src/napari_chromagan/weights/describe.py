"""A weights file in a few lines of words: what network, how it was trained, what it scored.

What ``napari-chromagan info model.pt`` prints; read from the checkpoint's configuration and the
metadata that training, fine-tuning and ``python -m training export`` record (no Qt, no napari).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.weights.checkpoint import Checkpoint

__all__ = ["describe_checkpoint"]


def describe_checkpoint(ckpt: Checkpoint) -> list[str]:
    """One line per fact the file records, most important first."""
    config, meta = ckpt.config, ckpt.metadata
    parameters = sum(p.numel() for p in ckpt.generator.parameters())
    trained_at = meta.get("trained_image_size")
    size = f"network size {config.image_size}" + (
        f" (trained at {trained_at})" if trained_at and trained_at != config.image_size else ""
    )
    lines = [
        (
            f"model: {config.trunk} family, width {config.width:g}, {size}, "
            f"{parameters / 1e6:.1f} M parameters"
        ),
        "class head: "
        + {True: "trained", False: "not trained (no class bars)", None: "not recorded"}[
            ckpt.class_head_trained
        ],
    ]
    if meta.get("label"):
        lines.append(f"label: {meta['label']}")
    if "steps" in meta:
        lines.append("training: " + _training(meta))
    if isinstance(meta.get("fine_tuned_from"), dict):
        source = meta["fine_tuned_from"]
        name = Path(str(source.get("weights", "?"))).name
        steps = f", {source['steps']} steps" if "steps" in source else ""
        lines.append(f"fine-tuned from: {name} ({source.get('variant', '?')}{steps})")
    if isinstance(meta.get("evaluation"), dict):
        lines.append("evaluation: " + _evaluation(meta["evaluation"]))
    if meta.get("exported"):
        lines.append(
            f"exported: {meta['exported']}, {meta.get('weights_dtype', 'float32')} weights"
        )
    if ckpt.training:
        lines.append(f"training state: step {ckpt.training.get('step', '?')} (resumable)")
    return lines


def _training(meta: dict[str, Any]) -> str:
    text = (
        f"{meta.get('variant', '?')} preset, {meta['steps']} steps, batch {meta.get('batch_size', '?')}, "
        f"on {meta.get('images', '?')} images"
    )
    if meta.get("ema_decay"):
        text += f"; weights averaged (decay {meta['ema_decay']:g})"
    elif isinstance(meta.get("trained_weights_of_averaged_run"), dict):
        text += "; the trained weights, not the run's moving average"
    return text


def _evaluation(ev: dict[str, Any]) -> str:
    metrics = ev.get("metrics", {})
    name = Path(str(ev.get("data", "?"))).name
    parts = [f"{name} ({ev.get('images', '?')} images"]
    size, network = ev.get("image_size"), ev.get("network_size")
    if network and network != size:
        parts[0] += f", network size {network}"
    parts[0] += ")"
    psnr = metrics.get(f"psnr_{size}")
    if psnr:
        parts.append(
            f"PSNR at {size} {psnr['model']:.2f} dB ({psnr['model'] - psnr['floor']:+.2f} over gray)"
        )
    colour = metrics.get("colourfulness")
    if colour and colour.get("truth"):
        parts.append(
            f"colourfulness {100 * colour['model'] / colour['truth']:.0f} % of the truth's"
        )
    agree = metrics.get("class_top1_in_teacher_top5", {}).get("model")
    if agree is not None:
        parts.append(f"class top-1 in the teacher's top 5 on {100 * agree:.0f} %")
    return ", ".join(parts)
