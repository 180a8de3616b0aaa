"""The colourisation engine: any grayscale (or colour) image or stack in, colour out.

The authors' way (docs/model.md, "The colour pipeline at inference"): the network sees the lightness plane resized to
224x224 and predicts chroma (a*, b*) there; the chroma is upsampled bilinearly to the full
resolution and joined with the full-resolution lightness. So the output keeps every detail of the
input's lightness, and the network runs exactly once per plane, whatever the image size.

Three improvements on the authors' pipeline, all measurable:

* The lightness is downsized to 224 with an antialiasing filter (the authors used plain bilinear,
  which aliases on large images).
* The EfficientNet family, which takes any multiple of 32 on each side, sees the plane at its own
  aspect ratio (at the area of 224x224) instead of squashed to a square:
  :meth:`~napari_chromagan.model.generator.ModelConfig.network_shape`.
* Out-of-gamut colours are brought into sRGB by shrinking their chroma at constant L* and hue,
  rather than by clipping R, G and B (cv2's Lab2BGR), which shifts L*. So the output's L* matches
  the input's to within the 8-bit rounding (< 0.5).

Everything after the normalisation runs on the compute device: the resize to the network, the
network, the ab upsampling, the gamut fit and Lab -> uint8 RGB. A batch of small planes (a stack
of 512x512 frames, say) goes to the device in one copy and is processed as one block; a large
plane is processed in row strips, so a 10000x10000 image needs only its outputs plus a few strips
of host memory.

Fast-path options: ``precision`` chooses bf16 autocast for the network (the default on CUDA and
on CPUs with native bf16; lightness never goes through it, so L* is unaffected); ``compile``
runs the generator through :func:`torch.compile`; ``cuda_graphs`` also records each batch
shape's kernels as a CUDA graph and replays it (one launch instead of ~80 per batch); on CUDA,
planes go to the device and strips come back through pinned host memory with non-blocking copies.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from collections.abc import Generator as Events
from typing import Any, Literal, get_args

import torch

from napari_chromagan.device import (
    auto_uses_bf16,
    select_device,  # re-exported: callers of colorize.select_device keep working
)
from napari_chromagan.engine.compiled import compile_options
from napari_chromagan.engine.inputs import MAX_CHANNELS, check_batch_size, check_image, image_layout
from napari_chromagan.engine.normalize import Mode, resolve_normalization
from napari_chromagan.engine.planes import Target, blank_planes_message, run_batch
from napari_chromagan.engine.result import ColorizeResult
from napari_chromagan.engine.upsample import bilinear_rows
from napari_chromagan.errors import CheckpointError, MissingPixelsWarning, NetworkSizeError
from napari_chromagan.model.generator import Generator
from napari_chromagan.model.inference import inference_network
from napari_chromagan.progress import CancelEvent, Progress, check_cancel, run_events
from napari_chromagan.weights.checkpoint import load_checkpoint
from napari_chromagan.weights.lookup import resolve_weights

__all__ = [
    "MAX_CHANNELS",
    "CancelEvent",
    "ColorizeResult",
    "Colorizer",
    "Precision",
    "bilinear_rows",
    "check_batch_size",
    "image_layout",
    "select_device",
]

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]


class Colorizer:
    """Runs a ChromaGAN generator over images of any size, dtype and stack depth.

    Parameters
    ----------
    generator : Generator
        The network; it is put in eval mode. ``colorizer.generator`` is what runs: the given
        generator moved to ``device`` or, where BatchNorm folds into the convolutions or the
        weights are pre-cast for autocast, a copy of it on ``device``
        (:func:`~napari_chromagan.model.inference.inference_network`; same results, faster).
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    metadata : dict, optional
        What is known about the weights (``class_head_trained``, variant...).
    weights : path, optional
        The file the generator came from, kept for the record.
    precision : {"auto", "fp32", "bf16"}
        The network's arithmetic. "auto": bf16 autocast on CUDA and on CPUs that compute bf16
        natively (AVX512-BF16 or AMX, :func:`~napari_chromagan.device.cpu_has_native_bf16`),
        float32 elsewhere (MPS, other CPUs, where bf16 is emulated and slower). Measured on the
        224 development photographs (``bench/bench_precision.py``), bf16 moves the output by
        0.57 ΔE00 on average (99th percentile 2.37) with the default weights and 0.19 (1.29) with
        the paper-size network, within the limits of 1.0 and 3.0 set for this choice. "bf16": bf16
        autocast on any device. "fp32": no autocast anywhere.
        Only the network is affected: L* and the colour conversions always run in float32.
    compile : bool
        Run the generator through ``torch.compile(dynamic=False)``: one graph per batch shape
        (a batch is padded to a power of two, at most ``batch_size``: see
        :func:`~napari_chromagan.engine.compiled.compiled_batch`), with the options of
        :func:`~napari_chromagan.engine.compiled.compile_options` (on the CPU, inductor's freezing: the weights are constants of
        the compiled graph, taken at its first call). The first call pays for compilation; if
        compilation fails, a warning is logged and the colourizer falls back to eager mode.
    cuda_graphs : bool
        On CUDA, compile with ``mode="reduce-overhead"``: PyTorch records the compiled network
        as a CUDA graph per batch shape and replays it, which removes the kernel-launch cost
        that dominates small batches. Implies ``compile``. On other devices there are no CUDA
        graphs; the generator is compiled without them (and a message is logged).
    network_size : int, optional
        The network size S, a multiple of 32 (default: the weights' own,
        ``generator.config.image_size``): S x S, or a plane's aspect ratio at that area
        (:meth:`~napari_chromagan.model.generator.ModelConfig.network_shape`). Only the
        EfficientNet-Lite family runs at other sizes
        (:meth:`~napari_chromagan.model.generator.Generator.at_size`; the VGG16 family raises
        :class:`~napari_chromagan.errors.NetworkSizeError`). Smaller is faster and gives broader, more saturated chroma, larger follows
        finer detail: the trade measured in docs/model.md, "Network size". The output is always
        at the input's full resolution.
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
        network_size: int | None = None,
    ) -> None:
        if precision not in get_args(Precision):
            raise ValueError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
        if network_size is not None:
            generator = generator.at_size(network_size)
        self.device, self.device_info = select_device(device)
        log.info("napari-chromagan runs on %s", self.device_info)
        memory_format = (
            torch.channels_last if self.device.type != "mps" else torch.contiguous_format
        )
        self.precision = precision
        self.autocast_dtype: torch.dtype | None = (
            torch.bfloat16
            if precision == "bf16" or (precision == "auto" and auto_uses_bf16(self.device))
            else None
        )
        # the network it runs: BatchNorm folded, weights pre-cast for autocast (a copy; the
        # given generator when there is nothing to rewrite): model/inference.py
        self.generator = inference_network(generator.eval(), self.autocast_dtype).to(
            self.device, memory_format=memory_format
        )
        self.config = generator.config  # image_size: the size the network runs at
        self.metadata = dict(metadata or {})
        self.weights = None if weights is None else str(weights)
        # Pixels of full-resolution work per strip: large on a GPU, small on the host. On the
        # host every temporary of a 2 M-pixel strip (8-24 MB) was fresh memory from the system
        # allocator: 0.5-0.9 M page faults and ~1 s of kernel time per 4096x4096 image. Strips
        # of 256 k pixels keep the temporaries (1-3 MB) in reused heap memory and in cache:
        # colorize() of a 4096x4096 image went from 1.36 to 0.71 s, of a 20x512x512 stack from
        # 0.62 to 0.36 s (a width-0.25 network, so mostly post-processing; 2 cores, 2026-11-26).
        self.strip_pixels = (1 << 26) if self.device.type == "cuda" else (1 << 18)
        # Pinned staging only pays (and only works) with a CUDA device.
        self.pinned = self.device.type == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            log.info(
                "CUDA graphs need a CUDA device; %s compiles the network without them", self.device
            )
        self.compiled = bool(compile or cuda_graphs)
        self._forward: Callable[..., Any] = self.generator
        self._inductor: dict[str, Any] = {}
        if self.compiled:
            kwargs, self._inductor = compile_options(self.device, self.cuda_graphs)
            self._forward = torch.compile(self.generator, dynamic=False, **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        *,
        precision: Precision = "auto",
        compile: bool = False,
        cuda_graphs: bool = False,
        network_size: int | None = None,
    ) -> Colorizer:
        """Load weights (``path``, else ``$NAPARI_CHROMAGAN_WEIGHTS``, else the user cache).

        ``precision``, ``compile``, ``cuda_graphs`` and ``network_size`` are passed to
        :class:`Colorizer`.
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
            network_size=network_size,
        )

    def require_network_size(self, network_size: int | None) -> None:
        """Raise :class:`NetworkSizeError` unless ``network_size`` is None or the size this
        colourizer runs its network at: a ready colourizer's size is set when it is built."""
        if network_size not in (None, self.config.image_size):
            raise NetworkSizeError(
                f"this Colorizer runs its network at {self.config.image_size}: build the Colorizer "
                f"with network_size={network_size} instead, or pass its weights file"
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
                if self._inductor:
                    import torch._inductor.config as inductor_config

                    with inductor_config.patch(**self._inductor):
                        return self._forward(x, with_class=with_class)
                if not self.cuda_graphs:
                    return self._forward(x, with_class=with_class)
                # A graph's outputs live in memory its next replay overwrites: mark the new
                # call, and copy the outputs out before anything else can run the graph.
                torch.compiler.cudagraph_mark_step_begin()
                ab, probs = self._forward(x, with_class=with_class)
                return ab.clone(), None if probs is None else probs.clone()
            except Exception as exc:  # compilation errors have many types (dynamo, inductor, C++)
                log.warning(
                    "torch.compile failed (%s: %s); running eagerly", type(exc).__name__, exc
                )
                self._forward = self.generator
                self.compiled = self.cuda_graphs = False
        return self.generator(x, with_class=with_class)

    @torch.inference_mode()
    def predict(
        self, L: torch.Tensor, with_class: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network once on a batch of network-sized planes.

        ``L``: float (N, 1, S, S) in [0, 1] on any device (the EfficientNet family: any
        (N, 1, h, w) with h and w multiples of 32). Returns Lab (a*, b*) as float32 (N, 2, h, w)
        on the compute device, and the class probabilities (N, K) or None.
        """
        x = L.to(self.device, torch.float32, non_blocking=True).contiguous(
            memory_format=torch.channels_last
        )
        with self._autocast():
            ab, probs = self._run_generator(x, with_class)
        # Damaged weights (a negative BatchNorm variance, say) give NaN from finite input; without
        # this check they come out as a black or gray image and exit code 0.
        finite = (
            torch.isfinite(ab).all()
            if probs is None
            else torch.isfinite(ab).all() & torch.isfinite(probs).all()
        )
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

        The callback form of :meth:`iter_colorize`, which does the work.

        Parameters
        ----------
        image : array
            (H, W) grayscale; (H, W, 3|4) colour, re-coloured from its own lightness; or a stack
            (..., H, W) (or (..., H, W, 3|4) with ``rgb=True``), colourised plane by plane.
        batch_size : int
            Planes per network call.
        normalization, percentiles, value_range
            How intensities map to L*: see :func:`~napari_chromagan.engine.normalize.resolve_normalization`.
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
        events = self.iter_colorize(
            image,
            batch_size=batch_size,
            normalization=normalization,
            percentiles=percentiles,
            value_range=value_range,
            rgb=rgb,
            with_class=with_class,
            cancel=cancel,
        )
        return run_events(events, progress)

    def iter_colorize(
        self,
        image: Any,
        *,
        batch_size: int = 8,
        normalization: Mode = "auto",
        percentiles: tuple[float, float] = (0.5, 99.5),
        value_range: tuple[float, float] | None = None,
        rgb: bool | None = None,
        with_class: bool = True,
        cancel: CancelEvent | None = None,
        phase: Callable[[str], None] | None = None,
    ) -> Events[Progress, None, ColorizeResult]:
        """:meth:`colorize` as a generator of :class:`~napari_chromagan.progress.Progress` events.

        Yields ``Progress(done, total)`` in planes, once before the first batch and after each,
        and returns the :class:`ColorizeResult` (``yield from`` gives it). Stops before the next
        batch, raising :class:`~napari_chromagan.errors.Cancelled`, when ``cancel`` is set.
        ``phase(name)``, when given, is called as each step of the work ends ("normalise",
        "resize", "network", "full_resolution"), for benchmarks that time them. The other
        arguments are :meth:`colorize`'s.
        """
        is_rgb, squeeze = check_image(image, rgb)
        batch_size = check_batch_size(batch_size)
        if squeeze:
            image = image[..., 0]
        norm = resolve_normalization(
            image, normalization, percentiles=percentiles, value_range=value_range, rgb=is_rgb
        )
        if phase is not None:
            phase("normalise")
        target = Target.make(
            image,
            norm,
            is_rgb,
            keep_lab=True,
            num_classes=self.config.num_classes if with_class else None,
        )
        planes = target.planes
        yield Progress(0, planes)
        for start in range(0, planes, batch_size):
            check_cancel(cancel, "colourisation", start, planes)
            batch = slice(start, min(start + batch_size, planes))
            run_batch(
                self, [(target, batch)], with_class=with_class, pad_to=batch_size, phase=phase
            )
            yield Progress(batch.stop, planes)
        message = blank_planes_message(target.blank)
        if message is not None:
            warnings.warn(message, MissingPixelsWarning, stacklevel=4)
        return self.result_of(target)

    def result_of(self, target: Target) -> ColorizeResult:
        """The :class:`ColorizeResult` of a finished target that kept its L* and a*b*."""
        if target.L is None or target.ab is None:
            raise ValueError(
                "this target did not keep its L* and a*b* (keep_lab=False): only its RGB exists"
            )
        spatial, leading = target.spatial, target.spatial[:-2]
        return ColorizeResult(
            rgb=target.rgb.reshape(*spatial, 3),
            L=target.L.reshape(spatial),
            ab=target.ab.reshape(*spatial, 2),
            class_probs=None if target.probs is None else target.probs.reshape(*leading, -1),
            normalization=target.norm,
            missing=None if target.missing is None else target.missing.reshape(spatial),
            device=str(self.device),
            weights=self.weights,
        )
