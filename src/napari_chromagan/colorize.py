"""The colourisation engine: any grayscale (or colour) image or stack in, colour out.

The authors' way (docs: chromagan-spec.md §4.2): the network sees the lightness plane resized to
224x224 and predicts chroma (a*, b*) there; the chroma is upsampled bilinearly to the full
resolution and joined with the full-resolution lightness. So the output keeps every detail of the
input's lightness, and the network runs exactly once per plane, whatever the image size.

Two improvements on the authors' pipeline, both measurable:

* The lightness is downsized to 224 with an antialiasing filter (the authors used plain bilinear,
  which aliases on large images).
* Out-of-gamut colours are brought into sRGB by shrinking their chroma at constant L* and hue,
  rather than by clipping R, G and B (cv2's Lab2BGR), which shifts L*. So the output's L* matches
  the input's to within the 8-bit rounding (< 0.5).

Everything after the normalisation runs on the compute device: the resize to the network, the
network, the ab upsampling, the gamut fit and Lab -> uint8 RGB. A batch of small planes (a stack
of 512x512 frames, say) goes to the device in one copy and is processed as one block; a large
plane is processed in row strips, so a 10000x10000 image needs only its outputs plus a few strips
of host memory.

Fast-path options (all off the CPU's default path unless asked for): ``precision`` chooses bf16
autocast for the network (lightness never goes through it, so L* is unaffected); ``compile``
runs the generator through :func:`torch.compile`; ``cuda_graphs`` also records each batch
shape's kernels as a CUDA graph and replays it (one launch instead of ~80 per batch); on CUDA,
planes go to the device and strips come back through pinned host memory with non-blocking copies.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .color import rgb_to_luminance_L
from .device import select_device  # re-exported: callers of colorize.select_device keep working
from .errors import Cancelled, CheckpointError, MissingPixelsWarning, UnsupportedImageError
from .model import Generator
from .normalize import Mode, Normalization, resolve_normalization
from .render import render_lab
from .weights import resolve_weights

__all__ = ["MAX_CHANNELS", "ColorizeResult", "Colorizer", "Precision", "bilinear_rows", "check_batch_size", "image_layout", "select_device"]

log = logging.getLogger(__name__)

MISSING_L = 50.0  # L* given to NaN/inf pixels: they come out mid-gray, with no chroma
# A last axis shorter than this that is neither colour (3, 4) nor 1 is taken for channels, not
# for the width of a stack of images: (H, W, 2) is a two-channel image, not H images 2 pixels wide.
MAX_CHANNELS = 8
Precision = Literal["auto", "fp32", "bf16"]
_ACCEPTED = "uint8, uint16, int16, int32 and other integer types, float32 and float64"


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class ColorizeResult:
    """What :meth:`Colorizer.colorize` returns.

    Attributes
    ----------
    rgb : ndarray
        uint8, the input's spatial shape + (3,).
    L : ndarray
        float32, the input's spatial shape: Lab L* in [0, 100] at full resolution (the normalised
        input; missing pixels are 50).
    ab : ndarray
        float32, spatial shape + (2,): the predicted Lab a*, b* at full resolution, before gamut
        fitting.
    class_probs : ndarray or None
        float32, stack shape + (num_classes,): one class distribution per plane (a 2D image has
        shape (num_classes,)); None when the class head was skipped.
    normalization : Normalization
        How intensities were mapped to L*.
    missing : ndarray or None
        bool, spatial shape: pixels that were NaN or inf (gray in the output); None if none were.
    device : str
        Where the network ran.
    weights : str or None
        The weights file, when the colourizer was loaded from one.
    """

    rgb: np.ndarray
    L: np.ndarray
    ab: np.ndarray
    class_probs: np.ndarray | None
    normalization: Normalization
    missing: np.ndarray | None
    device: str
    weights: str | None = None

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.L.shape[:-2]


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as a batch size: a whole number >= 1, else a TypeError or ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a whole number >= 1 (planes per network call, e.g. {name}=8), "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (planes per network call, e.g. {name}=8), got {value}")
    return int(value)


def image_layout(shape: tuple[int, ...], rgb: bool | None = None) -> tuple[tuple[int, ...], bool, bool]:
    """How :meth:`Colorizer.colorize` reads an array of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        The array's shape, at least 2D.
    rgb : bool, optional
        Whether the last axis is colour; None decides from the shape: a last axis of 3 or 4 is
        colour, one of 1 is dropped, and any other length below :data:`MAX_CHANNELS` is refused
        as ambiguous (channels, not a width).

    Returns
    -------
    (spatial, is_rgb, squeeze)
        The shape of the lightness result (stack axes + (H, W)), whether the last axis is colour,
        and whether a last axis of length 1 is dropped.

    Raises
    ------
    UnsupportedImageError
        For a last axis that looks like channels (naming the shape and how to pass it), or a
        colour axis that is not 3 or 4 long when ``rgb=True``.
    """
    shape = tuple(int(n) for n in shape)
    last = shape[-1]
    if rgb is None:
        if len(shape) >= 3 and last == 1:
            return shape[:-1], False, True
        if len(shape) >= 3 and last < MAX_CHANNELS and last not in (3, 4):
            stack = math.prod(shape[:-2])
            raise UnsupportedImageError(
                f"an array of shape {shape} has a last axis of length {last}, which looks like {last} "
                f"channels rather than an image {last} pixels wide (it would be read as {stack} images of "
                f"{shape[-2]} x {last} pixels). Colourise one channel with image[..., 0] (or another "
                "index), or pass rgb=False if it really is a stack of narrow images",
                cli_message=(
                    f"shape {shape}: the last axis of length {last} looks like {last} channels, not an "
                    f"image {last} pixels wide; choose the channel to colourise with --channel N "
                    f"(N from 0 to {last - 1})"
                ),
            )
        rgb = len(shape) >= 3 and last in (3, 4)
    if rgb and (len(shape) < 3 or last not in (3, 4)):
        raise UnsupportedImageError(
            f"a colour image needs a last axis of length 3 (RGB) or 4 (RGBA), got shape {shape}; "
            "pass rgb=False for a grayscale stack"
        )
    return (shape[:-1] if rgb else shape), bool(rgb), False


def _check_image(image: Any, rgb: bool | None) -> tuple[bool, bool]:
    """Validate ``image``; return whether its last axis is colour and whether it is dropped (length 1)."""
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is None or dtype is None:
        raise UnsupportedImageError(
            f"expected a numpy or dask array, got {type(image).__name__}; wrap it with np.asarray"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        kind = {"b": "bool", "c": "complex", "O": "object"}.get(dtype.kind, str(dtype))
        raise UnsupportedImageError(
            f"cannot colourise a {kind} array; accepted dtypes: {_ACCEPTED}. "
            "Convert a mask with .astype(np.uint8) * 255, or take np.abs of complex data.",
            cli_message=(
                f"cannot colourise {kind} pixel values; accepted: {_ACCEPTED}. Save the image with "
                "real-valued pixels (for complex data, its magnitude) and run again"
            ),
        )
    if len(shape) < 2:
        raise UnsupportedImageError(
            f"need at least a 2D image (H, W), got shape {tuple(shape)}; "
            "accepted: (H, W), (H, W, 3|4) colour, or stacks (..., H, W)"
        )
    if any(n == 0 for n in shape):
        raise UnsupportedImageError(f"the image is empty (shape {tuple(shape)}): every axis needs length >= 1")
    _, is_rgb, squeeze = image_layout(tuple(shape), rgb)
    return is_rgb, squeeze


class Colorizer:
    """Runs a ChromaGAN generator over images of any size, dtype and stack depth.

    Parameters
    ----------
    generator : Generator
        The network; it is moved to ``device`` and put in eval mode.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    metadata : dict, optional
        What is known about the weights (``class_head_trained``, variant...).
    weights : path, optional
        The file the generator came from, kept for the record.
    precision : {"auto", "fp32", "bf16"}
        The network's arithmetic. "auto": bf16 autocast on CUDA, float32 elsewhere. "bf16": bf16
        autocast on any device (on the CPU it pays off on processors with AVX512-BF16 or AMX;
        the predicted a*, b* move by about 0.2 Lab units on average, under 1 at worst).
        "fp32": no autocast anywhere.
        Only the network is affected: L* and the colour conversions always run in float32.
    compile : bool
        Run the generator through ``torch.compile(dynamic=False)``: one graph per batch shape
        (the last, partial batch of a stack is padded to ``batch_size``, so a run compiles
        once). The first call pays for compilation; if compilation fails, a warning is logged
        and the colourizer falls back to eager mode.
    cuda_graphs : bool
        On CUDA, compile with ``mode="reduce-overhead"``: PyTorch records the compiled network
        as a CUDA graph per batch shape and replays it, which removes the kernel-launch cost
        that dominates small batches. Implies ``compile``. On other devices there are no CUDA
        graphs; the generator is compiled without them (and a message is logged).
    """

    def __init__(
        self,
        generator: Generator,
        device: str | torch.device = "auto",
        *,
        metadata: dict[str, Any] | None = None,
        weights: str | os.PathLike[str] | None = None,
        precision: Precision = "auto",
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        if precision not in get_args(Precision):
            raise ValueError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
        self.device, self.device_info = select_device(device)
        log.info("napari-chromagan runs on %s", self.device_info)
        memory_format = torch.channels_last if self.device.type != "mps" else torch.contiguous_format
        self.generator = generator.eval().to(self.device, memory_format=memory_format)
        self.config = generator.config
        self.metadata = dict(metadata or {})
        self.weights = None if weights is None else str(weights)
        # Pixels of full-resolution work per strip: large on a GPU, small on the host. On the
        # host every temporary of a 2 M-pixel strip (8-24 MB) was fresh memory from the system
        # allocator: 0.5-0.9 M page faults and ~1 s of kernel time per 4096x4096 image. Strips
        # of 256 k pixels keep the temporaries (1-3 MB) in reused heap memory and in cache:
        # colorize() of a 4096x4096 image went from 1.36 to 0.71 s, of a 20x512x512 stack from
        # 0.62 to 0.36 s (a width-0.25 network, so mostly post-processing; 2 cores, 2026-11-26).
        self.strip_pixels = (1 << 26) if self.device.type == "cuda" else (1 << 18)
        self.precision = precision
        self.autocast_dtype: torch.dtype | None = (
            torch.bfloat16
            if precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
            else None
        )
        # Pinned staging only pays (and only works) with a CUDA device.
        self._pinned = self.device.type == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            log.info("CUDA graphs need a CUDA device; %s compiles the network without them", self.device)
        self.compiled = bool(compile or cuda_graphs)
        self._forward: Callable[..., Any] = self.generator
        if self.compiled:
            options: dict[str, Any] = {"mode": "reduce-overhead"} if self.cuda_graphs else {}
            self._forward = torch.compile(self.generator, dynamic=False, **options)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        *,
        precision: Precision = "auto",
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> Colorizer:
        """Load weights (``path``, else ``$NAPARI_CHROMAGAN_WEIGHTS``, else the user cache).

        ``precision``, ``compile`` and ``cuda_graphs`` are passed to :class:`Colorizer`.
        """
        resolved = resolve_weights(path)
        ckpt = load_checkpoint(resolved)
        return cls(
            ckpt.generator,
            device,
            metadata=ckpt.metadata,
            weights=resolved,
            precision=precision,
            compile=compile,
            cuda_graphs=cuda_graphs,
        )

    @property
    def class_head_trained(self) -> bool | None:
        value = self.metadata.get("class_head_trained")
        return None if value is None else bool(value)

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast("cuda" if self.device.type == "cuda" else "cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _run_generator(
        self, x: torch.Tensor, with_class: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The generator's forward, compiled when asked for; eager if compilation fails."""
        if self._forward is not self.generator:
            try:
                if not self.cuda_graphs:
                    return self._forward(x, with_class=with_class)
                # A graph's outputs live in memory its next replay overwrites: mark the new
                # call, and copy the outputs out before anything else can run the graph.
                torch.compiler.cudagraph_mark_step_begin()
                ab, probs = self._forward(x, with_class=with_class)
                return ab.clone(), None if probs is None else probs.clone()
            except Exception as exc:  # compilation errors have many types (dynamo, inductor, C++)
                log.warning("torch.compile failed (%s: %s); running eagerly", type(exc).__name__, exc)
                self._forward = self.generator
                self.compiled = self.cuda_graphs = False
        return self.generator(x, with_class=with_class)

    @torch.inference_mode()
    def predict(self, L: torch.Tensor, with_class: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network once on a batch of network-sized planes.

        ``L``: float (N, 1, S, S) in [0, 1] on any device. Returns Lab (a*, b*) as float32
        (N, 2, S, S) on the compute device, and the class probabilities (N, K) or None.
        """
        x = L.to(self.device, torch.float32, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            ab, probs = self._run_generator(x, with_class)
        # Damaged weights (a negative BatchNorm variance, say) give NaN from finite input; without
        # this check they come out as a black or gray image and exit code 0.
        finite = torch.isfinite(ab).all() if probs is None else torch.isfinite(ab).all() & torch.isfinite(probs).all()
        if not bool(finite):
            where = self.weights if self.weights is not None else "this generator"
            raise CheckpointError(
                f"the network's output is not finite (NaN or inf) with the weights {where}: the weights "
                "are damaged (for instance a diverged training run). Use other weights: an earlier "
                "checkpoint, or the file downloaded or exported again"
            )
        ab = ab.float() * 255.0 - 128.0
        return ab, None if probs is None else probs.float()

    def colorize(
        self,
        image: Any,
        *,
        batch_size: int = 8,
        normalization: Mode = "auto",
        percentiles: tuple[float, float] = (0.5, 99.5),
        value_range: tuple[float, float] | None = None,
        rgb: bool | None = None,
        with_class: bool = True,
        progress: Callable[[int, int], None] | None = None,
        cancel: CancelEvent | None = None,
    ) -> ColorizeResult:
        """Colourise ``image``, a numpy or dask array.

        Parameters
        ----------
        image : array
            (H, W) grayscale; (H, W, 3|4) colour, re-coloured from its own lightness; or a stack
            (..., H, W) (or (..., H, W, 3|4) with ``rgb=True``), colourised plane by plane.
        batch_size : int
            Planes per network call.
        normalization, percentiles, value_range
            How intensities map to L*: see :func:`~napari_chromagan.normalize.resolve_normalization`.
        rgb : bool, optional
            Whether the last axis is colour; by default a last axis of 3 or 4 is, one of 1 is
            dropped, and other lengths below :data:`MAX_CHANNELS` are refused as channels (see
            :func:`image_layout`); ``rgb=False`` reads any last axis as the image width.
        with_class : bool
            Also compute the class distribution of each plane.
        progress : callable, optional
            ``progress(done, total)`` in planes, called once before the first batch and after each.
        cancel : threading.Event, optional
            When set, colourisation stops before the next batch and raises :class:`Cancelled`.

        Warns
        -----
        MissingPixelsWarning
            When the whole image, or whole planes of a stack, are NaN or inf (they come out gray).

        Raises
        ------
        UnsupportedImageError
            For an array that cannot be colourised as given (the message says how to pass it).
        CheckpointError
            When the network's output is not finite (damaged weights).
        """
        is_rgb, squeeze = _check_image(image, rgb)
        batch_size = check_batch_size(batch_size)
        if squeeze:
            image = image[..., 0]
        spatial = tuple(image.shape[:-1] if is_rgb else image.shape)
        leading, (H, W) = spatial[:-2], spatial[-2:]
        planes = math.prod(leading)
        norm = resolve_normalization(
            image, normalization, percentiles=percentiles, value_range=value_range, rgb=is_rgb
        )

        L_out = np.empty(spatial, np.float32)
        ab_out = np.empty((*spatial, 2), np.float32)
        rgb_out = np.empty((*spatial, 3), np.uint8)
        probs_out = np.empty((planes, self.config.num_classes), np.float32) if with_class else None
        missing: np.ndarray | None = None
        L_flat = L_out.reshape(planes, H, W)
        ab_flat = ab_out.reshape(planes, H, W, 2)
        rgb_flat = rgb_out.reshape(planes, H, W, 3)
        indices = list(np.ndindex(*leading))

        if progress is not None:
            progress(0, planes)
        for start in range(0, planes, batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"colourisation cancelled after {start} of {planes} planes")
            batch = slice(start, min(start + batch_size, planes))
            n = batch.stop - batch.start
            for p in range(batch.start, batch.stop):
                plane_missing = self._lightness(image, indices[p], norm, is_rgb, L_flat[p])
                if plane_missing is not None:
                    if missing is None:
                        missing = np.zeros((planes, H, W), bool)
                    missing[p] = plane_missing
            small, L_device = self._network_input(L_flat[batch])
            if self.compiled and n < batch_size:
                # a compiled graph is specialised to its batch size: pad the last batch to match
                small = torch.cat([small, small.new_zeros((batch_size - n, *small.shape[1:]))])
            ab_small, probs = self.predict(small, with_class=with_class)
            self._full_resolution(
                ab_small[:n], L_flat[batch], ab_flat[batch], rgb_flat[batch],
                None if missing is None else missing[batch], L_device,
            )
            if probs_out is not None and probs is not None:
                probs_out[batch] = probs[:n].cpu().numpy()
            if progress is not None:
                progress(batch.stop, planes)

        if missing is not None:
            _warn_blank_planes(missing.reshape(planes, -1).all(axis=1))
        return ColorizeResult(
            rgb=rgb_out,
            L=L_out,
            ab=ab_out,
            class_probs=None if probs_out is None else probs_out.reshape(*leading, -1),
            normalization=norm,
            missing=None if missing is None else missing.reshape(spatial),
            device=str(self.device),
            weights=self.weights,
        )

    def _rows_per_strip(self, W: int) -> int:
        return max(1, self.strip_pixels // W)

    def _lightness(
        self, image: Any, index: tuple[int, ...], norm: Normalization, is_rgb: bool, out: np.ndarray
    ) -> np.ndarray | None:
        """Write the plane's L* into ``out`` strip by strip; return its missing-pixel mask, if any."""
        H, W = out.shape
        rows = self._rows_per_strip(W)
        mask = None
        for r0 in range(0, H, rows):
            block = np.asarray(image[(*index, slice(r0, r0 + rows))])
            strip = out[r0 : r0 + rows]
            if is_rgb:
                unit = norm.apply(block[..., :3])
                bad = np.isnan(unit).any(axis=-1)
                t = torch.from_numpy(np.nan_to_num(unit, nan=0.0)).to(self.device)
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

    def _to_device(self, planes: np.ndarray) -> torch.Tensor:
        """Host float32 planes -> the compute device (no copy on the CPU).

        On CUDA the planes are first copied into page-locked memory, so that the transfer itself
        is asynchronous and the host goes on queueing work.
        """
        t = torch.from_numpy(planes)
        if self.device.type == "cpu":
            return t
        if self._pinned:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _network_input(self, L_planes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(n, H, W) host L* -> the network's (n, 1, S, S) input, and the planes on the device.

        A batch of small planes goes to the device in one copy and is processed as one block from
        there on (the second value, for :meth:`_full_resolution`); large planes go one at a time
        and come back in row strips (None).
        """
        n, H, W = L_planes.shape
        S = self.config.image_size
        if n * H * W <= self.strip_pixels:
            L_device = self._to_device(L_planes)
            return self._resize(L_device, S), L_device
        return torch.cat([self._resize(self._to_device(L_planes[i : i + 1]), S) for i in range(n)]), None

    def _resize(self, L: torch.Tensor, size: int) -> torch.Tensor:
        """(n, H, W) L* on the compute device -> (n, 1, size, size) in [0, 1], antialiased when shrinking."""
        shrink = L.shape[-2] > size or L.shape[-1] > size
        t = F.interpolate(L[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        return (t / 100.0).clamp_(0.0, 1.0)

    def _full_resolution(
        self,
        ab_small: torch.Tensor,
        L_planes: np.ndarray,
        ab_dst: np.ndarray,
        rgb_dst: np.ndarray,
        missing: np.ndarray | None,
        L_device: torch.Tensor | None = None,
    ) -> None:
        """Upsample (n, 2, S, S) ab to the planes' (H, W), join with L*, write ab and uint8 RGB.

        ``L_planes`` (n, H, W) is the lightness on the host, ``L_device`` the same already on the
        device (or None: strips are copied as needed); ``ab_dst`` (n, H, W, 2) and ``rgb_dst``
        (n, H, W, 3) receive the results; ``missing`` (n, H, W) marks pixels given no chroma.
        Planes that fit in one strip together are processed as one block; larger ones plane by
        plane in strips of rows.
        """
        n, H, W = L_planes.shape
        upsampled_rows = bilinear_rows(ab_small, H, W)
        if n * H * W <= self.strip_pixels:
            chunks = [(slice(0, n), 0, H)]
        else:
            rows = self._rows_per_strip(W)
            chunks = [(slice(p, p + 1), r0, min(H, r0 + rows)) for p in range(n) for r0 in range(0, H, rows)]
        for planes, r0, r1 in chunks:
            ab = upsampled_rows(r0, r1, planes)
            if missing is not None:
                hole = torch.from_numpy(missing[planes, r0:r1]).to(ab.device)
                ab = ab.masked_fill(hole[:, None], 0.0)
            if L_device is not None:
                L = L_device[planes, r0:r1]
            else:
                L = torch.from_numpy(L_planes[planes, r0:r1]).to(self.device, non_blocking=True)
            rgb = render_lab(L, ab, dim=-3)
            if self._pinned:
                # Both results come back through pinned buffers with asynchronous copies and one
                # synchronisation, instead of two blocking copies through pageable memory.
                ab_host = _pinned_copy(ab.permute(0, 2, 3, 1))
                rgb_host = _pinned_copy(rgb.permute(0, 2, 3, 1))
                torch.cuda.current_stream(self.device).synchronize()
                ab_dst[planes, r0:r1] = ab_host.numpy()
                rgb_dst[planes, r0:r1] = rgb_host.numpy()
            else:
                ab_dst[planes, r0:r1] = ab.permute(0, 2, 3, 1).cpu().numpy()
                rgb_dst[planes, r0:r1] = rgb.permute(0, 2, 3, 1).cpu().numpy()


def _warn_blank_planes(blank: np.ndarray) -> None:
    """Warn when whole planes (``blank``: one bool per plane) had no finite pixel."""
    if not blank.any():
        return
    if blank.all():
        message = (
            "every pixel of the image is NaN or inf, so it comes out uniform gray; check the data "
            "(or read it with another dtype)"
            if blank.size == 1
            else f"every pixel of all {blank.size} planes is NaN or inf, so they come out uniform gray; check the data"
        )
    else:
        which = ", ".join(str(i) for i in np.flatnonzero(blank)[:5]) + (" ..." if blank.sum() > 5 else "")
        message = (
            f"{int(blank.sum())} of {blank.size} planes (index {which}) have no finite pixel (NaN or inf "
            "everywhere), so they come out uniform gray"
        )
    warnings.warn(message, MissingPixelsWarning, stacklevel=3)


def _pinned_copy(t: torch.Tensor) -> torch.Tensor:
    """Start an asynchronous copy of the CUDA tensor ``t`` into pinned host memory.

    The result may be read only after the current stream has been synchronised.
    """
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


def bilinear_rows(small: torch.Tensor, H: int, W: int) -> Callable[..., torch.Tensor]:
    """The engine's chroma upsampling, strip by strip: rows of a bilinear resize to (H, W).

    Bilinear resizing is separable: the columns of ``small`` are resized once for all planes
    (to h x W), then each strip of output rows takes its two source rows. Identical to
    ``F.interpolate(small, (H, W), mode="bilinear", align_corners=False)`` in one go (antialiased
    where it shrinks), with a fraction of the memory. The engine upsamples the network's a*b*
    with it; :mod:`napari_chromagan.hints` its chroma corrections.

    Parameters
    ----------
    small : Tensor
        float (n, c, h, w) on any device.
    H, W : int
        The full-resolution height and width.

    Returns
    -------
    callable
        ``rows(r0, r1, planes=slice(None))`` -> float (n', c, r1 - r0, W): rows r0..r1 of the
        resized planes ``planes``, on ``small``'s device.
    """
    h, w = small.shape[-2:]
    cols = F.interpolate(small, size=(h, W), mode="bilinear", align_corners=False, antialias=W < w)
    shrink = H < h
    if shrink:  # shrinking rows: resize whole (at most h x W, small) with antialiasing
        cols = F.interpolate(cols, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
    # The network's output is channels_last; row gathers and the per-channel colour maths are
    # several times faster on planar (contiguous) data, and cols is small (n x c x h x W).
    cols = cols.contiguous()

    def rows(r0: int, r1: int, planes: slice = slice(None)) -> torch.Tensor:
        return cols[planes, :, r0:r1] if shrink else _rows_bilinear(cols[planes], r0, r1, H)

    return rows


def _rows_bilinear(cols: torch.Tensor, r0: int, r1: int, H: int) -> torch.Tensor:
    """Rows r0..r1 of a bilinear (align_corners=False) resize of ``cols`` (..., S, W) to height H."""
    S = cols.shape[-2]
    y = (torch.arange(r0, r1, device=cols.device, dtype=torch.float64) + 0.5) * (S / H) - 0.5
    y = y.clamp_(min=0.0)
    y0 = y.floor().long().clamp_(max=S - 1)
    y1 = (y0 + 1).clamp_(max=S - 1)
    w = (y - y0).to(cols.dtype)[:, None]
    return cols.index_select(-2, y0) * (1 - w) + cols.index_select(-2, y1) * w
