"""How the ``colorize`` subcommand reads and writes one file (in the pipeline's worker threads)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_chromagan.errors import UnsupportedImageError

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports torch: not for --help
    from napari_chromagan.engine.pipeline import Decoded, FileResult

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    """One input and the output planned for it (a stack's may still change to .tif)."""

    source: Path
    target: Path


def stack_planes(shape: tuple[int, ...]) -> int:
    """How many planes the engine sees in an array of this shape (as Colorizer decides)."""
    from napari_chromagan.engine.inputs import image_layout

    spatial, _, _ = image_layout(shape)
    return math.prod(spatial[:-2])


def select_channel(image: Any, channel: int, source: Path) -> Any:
    """``image[..., channel]`` when its last axis is a channel axis (``--channel``); else ``image``."""
    from napari_chromagan.engine.inputs import MAX_CHANNELS

    if image.ndim < 3 or image.shape[-1] >= MAX_CHANNELS:
        return image  # no channel axis: a plain gray image or stack, colourised as it is
    if channel >= image.shape[-1]:
        raise UnsupportedImageError(
            f"{source} has {image.shape[-1]} channels (shape {tuple(image.shape)}), so --channel {channel} "
            f"does not exist; choose --channel 0 to {image.shape[-1] - 1}"
        )
    return image[..., channel]


class FileIO:
    """``read`` and ``write`` of :func:`~napari_chromagan.engine.pipeline.iter_colorize_files` for the CLI.

    ``taken``: the output names in use (casefolded), shared by the whole run; ``completed``
    collects every output written, from the writer thread (so that an interrupted run can say
    exactly what is complete).
    """

    def __init__(self, args: argparse.Namespace, taken: set[str]) -> None:
        self.args = args
        self.taken = taken
        self.completed: list[Path] = []

    def read(self, job: Job) -> Decoded:
        """Decode ``job.source``; a stack bound for a format that cannot hold one goes to a .tif."""
        from napari_chromagan.engine.pipeline import Decoded
        from napari_chromagan.files import (
            imageio,  # looked up at call time: tests replace read_image
        )

        args, source = self.args, job.source
        max_pixels = imageio.DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
        image = imageio.read_image(source, max_pixels=max_pixels or None)
        if args.channel is not None:
            image = select_channel(image, args.channel, source)
        planes = stack_planes(image.shape)
        if planes == 1 or job.target.suffix.lower() in TIFF_SUFFIXES:
            return Decoded(image, job.target)
        if args.format is not None:
            raise UnsupportedImageError(
                f"{source} is a stack of {planes} images, which {job.target.suffix} cannot hold; "
                "choose --format tiff"
            )
        target = self._tiff_name(job.target)
        note = f"{source} is a stack of {planes} images: writing it as TIFF, {target}"
        if target.exists():
            if args.skip_existing:
                return Decoded(None, target, (note,), skip=f"skipping {source}: {target} exists")
            if not args.overwrite:
                raise FileExistsError(
                    f"{target} exists; pass --overwrite to replace it or --skip-existing to keep it"
                )
        return Decoded(image, target, (note,))

    def _tiff_name(self, target: Path) -> Path:
        """``target`` as a .tif, under a name not yet taken (only a TIFF holds a stack)."""
        self.taken.discard(target.name.casefold())
        stem, number = target.stem, 2
        target = target.with_suffix(".tif")
        while target.name.casefold() in self.taken:
            target = target.with_name(f"{stem}_{number}.tif")
            number += 1
        self.taken.add(target.name.casefold())
        return target

    def write(self, job: Job, decoded: Decoded, result: FileResult, colorizer: Any) -> None:
        """Apply the colour hints for this file, if any, and write its RGB with its provenance."""
        from napari_chromagan.files import (
            imageio,  # looked up at call time: tests replace write_image
        )

        args = self.args
        made: Any = result
        hinted = None
        if getattr(args, "hints", None) is not None:
            from napari_chromagan.edit.hints import (
                HintParams,
                apply_color_hints,
                describe_hints,
                read_hints_csv,
            )

            hints = read_hints_csv(args.hints, job.source.name)
            if not hints.is_empty:
                made = apply_color_hints(result.lab, hints)
                hinted = describe_hints(hints, HintParams())
        record = None
        if args.provenance:
            from napari_chromagan.files.provenance import record_for

            # the weights' sha256 is hashed once per run
            record = record_for(colorizer, made, hints=hinted)
        imageio.write_image(decoded.target, made.rgb, overwrite=args.overwrite, provenance=record)
        self.completed.append(decoded.target)
