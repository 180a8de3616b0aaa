"""The engine's work on one batch of planes: lightness, the network, full-resolution colour.

One batch step, :func:`run_batch`, serves every caller: :meth:`Colorizer.iter_colorize
<napari_chromagan.engine.colorize.Colorizer.iter_colorize>` (the planes of one array, ``batch_size`` at a
time) and the file pipeline (:mod:`napari_chromagan.engine.pipeline`, which also packs the planes of
several small files into one network call). A :class:`Target` is one image being colourised: its
input, how its intensities map to L*, and the arrays its planes are written into.

For each slice of planes in a batch: L* at full resolution (strip by strip), then the network's
input (resized to the network's size S x S, or for the EfficientNet family to the planes' aspect
ratio at that area: :meth:`~napari_chromagan.model.generator.ModelConfig.network_shape`); the
network runs once per input shape in the batch (once, unless files of different aspect ratios
were packed together); then each
slice's a*b* is upsampled bilinearly to its planes' size, joined with their L*, fitted into the
sRGB gamut and written as uint8 RGB. Small planes are processed as one block on the device;
large ones plane by plane in row strips, so a 10000x10000 image needs only its outputs plus a
few strips of host memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_chromagan.color.lab import rgb_to_luminance_L
from napari_chromagan.color.render import render_lab
from napari_chromagan.engine.compiled import compiled_batch
from napari_chromagan.engine.normalize import Normalization
from napari_chromagan.engine.upsample import bilinear_rows

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.engine.colorize import Colorizer

__all__ = [
    "MISSING_L",
    "Target",
    "blank_planes_message",
    "full_resolution",
    "lightness",
    "network_input",
    "resize_to_network",
    "run_batch",
]

MISSING_L = 50.0  # L* given to NaN/inf pixels: they come out mid-gray, with no chroma


@dataclass
class Target:
    """One image being colourised and the arrays its planes go into.

    Attributes
    ----------
    image : array
        numpy or dask, validated: (*stack, H, W) gray or (*stack, H, W, 3|4) colour.
    norm : Normalization
        How its intensities map to L*.
    is_rgb : bool
        Whether the last axis of ``image`` is colour.
    rgb : ndarray
        uint8 (planes, H, W, 3): always written.
    L, ab : ndarray or None
        float32 (planes, H, W) and (planes, H, W, 2), kept only when asked for (a caller that
        writes only RGB files does not pay 12 bytes per pixel for them).
    probs : ndarray or None
        float32 (planes, num_classes) when the class head runs.
    missing : ndarray or None
        bool (planes, H, W), made at the first NaN/inf pixel, when L and ab are kept.
    blank : ndarray
        bool (planes,): planes without a single finite pixel.
    """

    image: Any
    norm: Normalization
    is_rgb: bool
    spatial: tuple[int, ...]
    rgb: np.ndarray
    L: np.ndarray | None
    ab: np.ndarray | None
    probs: np.ndarray | None
    blank: np.ndarray
    indices: list[tuple[int, ...]] = field(repr=False)
    missing: np.ndarray | None = None

    @classmethod
    def make(
        cls,
        image: Any,
        norm: Normalization,
        is_rgb: bool,
        *,
        keep_lab: bool,
        num_classes: int | None,
    ) -> Target:
        """A target for ``image`` with its output arrays; ``num_classes`` None skips the class head."""
        spatial = tuple(int(n) for n in (image.shape[:-1] if is_rgb else image.shape))
        leading, (H, W) = spatial[:-2], spatial[-2:]
        planes = math.prod(leading)
        return cls(
            image=image,
            norm=norm,
            is_rgb=is_rgb,
            spatial=spatial,
            rgb=np.empty((planes, H, W, 3), np.uint8),
            L=np.empty((planes, H, W), np.float32) if keep_lab else None,
            ab=np.empty((planes, H, W, 2), np.float32) if keep_lab else None,
            probs=None if num_classes is None else np.empty((planes, num_classes), np.float32),
            blank=np.zeros(planes, bool),
            indices=list(np.ndindex(*leading)),
        )

    @property
    def planes(self) -> int:
        return len(self.indices)

    def lightness(self, engine: Colorizer, planes: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """L* (n, H, W) of ``planes`` (in :attr:`L` when kept) and their missing-pixel mask, if any."""
        H, W = self.spatial[-2:]
        n = planes.stop - planes.start
        L = self.L[planes] if self.L is not None else np.empty((n, H, W), np.float32)
        mask = None
        for j, p in enumerate(range(planes.start, planes.stop)):
            plane_missing = lightness(
                engine, self.image, self.indices[p], self.norm, self.is_rgb, L[j]
            )
            if plane_missing is None:
                continue
            self.blank[p] = plane_missing.all()
            if self.L is not None:
                if self.missing is None:
                    self.missing = np.zeros((self.planes, H, W), bool)
                self.missing[p] = plane_missing
            if mask is None:
                mask = np.zeros((n, H, W), bool)
            mask[j] = plane_missing
        return L, (self.missing[planes] if self.missing is not None else mask)


def run_batch(
    engine: Colorizer,
    chunks: Sequence[tuple[Target, slice]],
    *,
    with_class: bool,
    pad_to: int,
    phase: Callable[[str], None] | None = None,
) -> None:
    """Colourise the planes ``chunks`` name (one slice of planes per target) in one network call.

    ``pad_to``: the largest batch of the run; a compiled network pads a smaller batch to
    :func:`compiled_batch`'s size (eager networks run it as it is). ``phase(name)``, when
    given, is called as each step ends: "normalise" (L*), "resize" (the network's input),
    "network", "full_resolution".
    """
    mark = phase if phase is not None else _no_phase
    lab = [target.lightness(engine, planes) for target, planes in chunks]
    mark("normalise")
    inputs = [network_input(engine, L) for L, _ in lab]
    mark("resize")
    outputs = _predict_by_shape(engine, [x for x, _ in inputs], with_class, pad_to)
    mark("network")
    for (target, planes), (L, missing), (_, L_device), (ab_small, probs) in zip(
        chunks, lab, inputs, outputs, strict=True
    ):
        ab_dst = None if target.ab is None else target.ab[planes]
        full_resolution(engine, ab_small, L, ab_dst, target.rgb[planes], missing, L_device)
        if target.probs is not None and probs is not None:
            target.probs[planes] = probs.cpu().numpy()
    mark("full_resolution")


def _predict_by_shape(
    engine: Colorizer, smalls: list[torch.Tensor], with_class: bool, pad_to: int
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The network's (ab, probs) for each of ``smalls``: one call per input shape among them."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(smalls):
        by_shape.setdefault(tuple(x.shape[-2:]), []).append(i)
    outputs: list[Any] = [None] * len(smalls)
    for members in by_shape.values():
        small = torch.cat([smalls[i] for i in members]) if len(members) > 1 else smalls[members[0]]
        n = small.shape[0]
        padded = compiled_batch(n, pad_to) if engine.compiled else n
        if padded > n:
            # a compiled graph is specialised to its batch size: pad to one it has (or will keep)
            small = torch.cat([small, small.new_zeros((padded - n, *small.shape[1:]))])
        ab, probs = engine.predict(small, with_class=with_class)
        start = 0
        for i in members:
            k = smalls[i].shape[0]
            outputs[i] = (
                ab[start : start + k],
                None if probs is None else probs[start : start + k],
            )
            start += k
    return outputs


def _no_phase(name: str) -> None:
    pass


def _rows_per_strip(engine: Colorizer, W: int) -> int:
    return max(1, engine.strip_pixels // W)


def lightness(
    engine: Colorizer,
    image: Any,
    index: tuple[int, ...],
    norm: Normalization,
    is_rgb: bool,
    out: np.ndarray,
) -> np.ndarray | None:
    """Write the plane ``image[index]``'s L* into ``out`` strip by strip; return its missing-pixel mask, if any."""
    H, W = out.shape
    rows = _rows_per_strip(engine, W)
    mask = None
    for r0 in range(0, H, rows):
        block = np.asarray(image[(*index, slice(r0, r0 + rows))])
        strip = out[r0 : r0 + rows]
        if is_rgb:
            unit = norm.apply(block[..., :3])
            bad = np.isnan(unit).any(axis=-1)
            t = torch.from_numpy(np.nan_to_num(unit, nan=0.0)).to(engine.device)
            strip[...] = rgb_to_luminance_L(t, dim=-1).cpu().numpy()
        else:
            norm.apply(block, out=strip)
            bad = np.isnan(strip)
            strip *= 100.0
        if bad.any():
            strip[bad] = MISSING_L
            if mask is None:
                mask = np.zeros((H, W), bool)
            mask[r0 : r0 + rows] = bad
    return mask


def _to_device(engine: Colorizer, planes: np.ndarray) -> torch.Tensor:
    """Host float32 planes -> the compute device (no copy on the CPU).

    On CUDA the planes are first copied into page-locked memory, so that the transfer itself
    is asynchronous and the host goes on queueing work.
    """
    t = torch.from_numpy(planes)
    if engine.device.type == "cpu":
        return t
    if engine.pinned:
        t = t.pin_memory()
    return t.to(engine.device, non_blocking=True)


def network_input(
    engine: Colorizer, L_planes: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n, H, W) host L* -> the network's (n, 1, h, w) input (``ModelConfig.network_shape``),
    and the planes on the device.

    A batch of small planes goes to the device in one copy and is processed as one block from
    there on (the second value, for :func:`full_resolution`); large planes go one at a time
    and come back in row strips (None).
    """
    n, H, W = L_planes.shape
    shape = engine.config.network_shape(H, W)
    if n * H * W <= engine.strip_pixels:
        L_device = _to_device(engine, L_planes)
        return resize_to_network(L_device, shape), L_device
    return torch.cat(
        [resize_to_network(_to_device(engine, L_planes[i : i + 1]), shape) for i in range(n)]
    ), None


def resize_to_network(L: torch.Tensor, shape: int | tuple[int, int]) -> torch.Tensor:
    """(n, H, W) L* on the compute device -> (n, 1, h, w) in [0, 1] (``shape`` (h, w), or one
    size for a square), antialiased when shrinking."""
    h, w = (shape, shape) if isinstance(shape, int) else shape
    shrink = L.shape[-2] > h or L.shape[-1] > w
    t = F.interpolate(
        L[:, None], size=(h, w), mode="bilinear", align_corners=False, antialias=shrink
    )
    return (t / 100.0).clamp_(0.0, 1.0)


def full_resolution(
    engine: Colorizer,
    ab_small: torch.Tensor,
    L_planes: np.ndarray,
    ab_dst: np.ndarray | None,
    rgb_dst: np.ndarray,
    missing: np.ndarray | None,
    L_device: torch.Tensor | None = None,
) -> None:
    """Upsample (n, 2, h, w) ab to the planes' (H, W), join with L*, write ab and uint8 RGB.

    ``L_planes`` (n, H, W) is the lightness on the host, ``L_device`` the same already on the
    device (or None: strips are copied as needed); ``ab_dst`` (n, H, W, 2, or None: not kept)
    and ``rgb_dst`` (n, H, W, 3) receive the results; ``missing`` (n, H, W) marks pixels given
    no chroma. Planes that fit in one strip together are processed as one block; larger ones
    plane by plane in strips of rows.
    """
    n, H, W = L_planes.shape
    upsampled_rows = bilinear_rows(ab_small, H, W)
    if n * H * W <= engine.strip_pixels:
        chunks = [(slice(0, n), 0, H)]
    else:
        rows = _rows_per_strip(engine, W)
        chunks = [
            (slice(p, p + 1), r0, min(H, r0 + rows)) for p in range(n) for r0 in range(0, H, rows)
        ]
    for planes, r0, r1 in chunks:
        ab = upsampled_rows(r0, r1, planes)
        if missing is not None:
            hole = torch.from_numpy(missing[planes, r0:r1]).to(ab.device)
            ab = ab.masked_fill(hole[:, None], 0.0)
        if L_device is not None:
            L = L_device[planes, r0:r1]
        else:
            L = torch.from_numpy(L_planes[planes, r0:r1]).to(engine.device, non_blocking=True)
        rgb = render_lab(L, ab, dim=-3)
        if engine.pinned:
            # Both results come back through pinned buffers with asynchronous copies and one
            # synchronisation, instead of two blocking copies through pageable memory.
            ab_host = None if ab_dst is None else _pinned_copy(ab.permute(0, 2, 3, 1))
            rgb_host = _pinned_copy(rgb.permute(0, 2, 3, 1))
            torch.cuda.current_stream(engine.device).synchronize()
            if ab_dst is not None:
                ab_dst[planes, r0:r1] = ab_host.numpy()
            rgb_dst[planes, r0:r1] = rgb_host.numpy()
        else:
            if ab_dst is not None:
                ab_dst[planes, r0:r1] = ab.permute(0, 2, 3, 1).cpu().numpy()
            rgb_dst[planes, r0:r1] = rgb.permute(0, 2, 3, 1).cpu().numpy()


def _pinned_copy(t: torch.Tensor) -> torch.Tensor:
    """Start an asynchronous copy of the CUDA tensor ``t`` into pinned host memory.

    The result may be read only after the current stream has been synchronised.
    """
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


def blank_planes_message(blank: np.ndarray) -> str | None:
    """What to say when whole planes (``blank``: one bool per plane) had no finite pixel; None if none."""
    if not blank.any():
        return None
    if blank.all():
        return (
            "every pixel of the image is NaN or inf, so it comes out uniform gray; check the data "
            "(or read it with another dtype)"
            if blank.size == 1
            else f"every pixel of all {blank.size} planes is NaN or inf, so they come out uniform gray; check the data"
        )
    which = ", ".join(str(i) for i in np.flatnonzero(blank)[:5]) + (
        " ..." if blank.sum() > 5 else ""
    )
    return (
        f"{int(blank.sum())} of {blank.size} planes (index {which}) have no finite pixel (NaN or inf "
        "everywhere), so they come out uniform gray"
    )
