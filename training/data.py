"""Training data: image files -> uint8 RGB batches -> (L, ab) on the training device.

The authors' pipeline (docs/model.md, "Training data") reads each image, squashes it to 224x224
(anisotropic bilinear resize, no crop) and converts it to Lab; the network input is L*/100 and its
target (a* + 128) / 255. Here the workers only decode and resize, and hand over uint8 RGB (4x less
to copy than float Lab); :func:`batch_to_lab` converts whole batches on the training device.

Differences from the authors, on purpose:

* Shrinking is antialiased (bilinear with a widened support, Pillow's ``BILINEAR``), as the
  plugin's inference does (:mod:`napari_chromagan.engine.colorize`), so the network trains on the
  lightness it will see; the authors' ``cv2.INTER_LINEAR`` aliases on large images.
* ``resize="crop"`` offers the usual augmentation (short side to S, random S x S crop, random
  horizontal flip), drawn from ``(seed, epoch, index)`` alone, so that it is identical with any
  number of workers and after a resume.
* A file that cannot be read never stops training: it comes back with status ``"unreadable"``
  (the reason logged once), and :func:`collate` drops it from the batch and counts it.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from napari_chromagan.color.lab import rgb_to_lab

from .images import GRAY_TOLERANCE, decode_image, find_images, is_gray
from .sampler import ResumableSampler

__all__ = [
    "GRAY_TOLERANCE",
    "STATUSES",
    "Batch",
    "ColorizationDataset",
    "ResumableSampler",
    "batch_to_lab",
    "collate",
    "find_images",
    "is_gray",
    "make_loader",
]

log = logging.getLogger("training.data")

STATUSES: tuple[str, ...] = ("ok", "grayscale", "skipped-grayscale", "unreadable")
_DROPPED = ("unreadable", "skipped-grayscale")


# --------------------------------------------------------------------------------------------
# Paths in numpy buffers, and resizing


class _PathTable:
    """Paths packed into two numpy arrays.

    A Python list of a million str/Path objects is slowly copied into every forked DataLoader
    worker as reference counts are touched (pytorch/pytorch#13246); numpy buffers are not.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        encoded = [os.fsencode(p) for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> Path:
        start, stop = self._offsets[index], self._offsets[index + 1]
        return Path(os.fsdecode(self._blob[start:stop].tobytes()))


def _resize(
    image: np.ndarray, size: tuple[int, int], box: tuple[float, ...] | None = None
) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) of uint8 (H, W[, 3]) to ``size`` = (W, H)."""
    pil = Image.fromarray(image)
    return np.array(pil.resize(size, Image.Resampling.BILINEAR, box=box))  # writable, for torch


# --------------------------------------------------------------------------------------------
# The dataset


class ColorizationDataset(torch.utils.data.Dataset):
    """Images as uint8 RGB tensors of one size, for colourisation training.

    Parameters
    ----------
    paths : sequence of Path
        The image files (see `find_images`).
    image_size : int
        Side S of the square samples (224 for the authors' model).
    resize : {"squash", "crop"}
        ``"squash"`` (the authors'): the whole image resized to S x S, aspect ratio not kept.
        ``"crop"``: short side resized to S, then a random S x S crop and a random horizontal
        flip, drawn from ``(seed, epoch, index)``.
    grayscale : {"keep", "skip"}
        Gray sources (gray modes, or RGB whose channels differ by at most 2) are kept as three
        equal channels (ab = 0; the paper trains on them as they are) or skipped.
    seed : int
        Seed of the augmentation.

    Notes
    -----
    ``dataset[i]`` is ``{"rgb": uint8 (3, S, S), "index": i, "status": str}`` with status
    ``"ok"``, ``"grayscale"`` (kept gray source), ``"skipped-grayscale"`` or ``"unreadable"``;
    for the last two, "rgb" is all zeros. Reading never raises for a bad file; the reason is
    logged once per path (the flags live in shared memory, so DataLoader workers of later epochs
    know what earlier ones logged).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        image_size: int,
        *,
        resize: Literal["squash", "crop"] = "squash",
        grayscale: Literal["keep", "skip"] = "keep",
        seed: int = 0,
    ) -> None:
        if resize not in ("squash", "crop"):
            raise ValueError(f"resize must be 'squash' or 'crop', got {resize!r}")
        if grayscale not in ("keep", "skip"):
            raise ValueError(f"grayscale must be 'keep' or 'skip', got {grayscale!r}")
        if int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if len(paths) == 0:
            raise ValueError("the dataset has no images; see find_images")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self._paths = _PathTable(paths)
        self.image_size = int(image_size)
        self.resize = resize
        self.grayscale = grayscale
        self.seed = int(seed)
        self.epoch = 0
        self._warned = torch.zeros(len(self._paths), dtype=torch.bool).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch``; call before iterating a DataLoader."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        """The file of sample ``index``."""
        return self._paths[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        path = self._paths[index]
        try:
            image, gray = decode_image(path)
            if gray and self.grayscale == "skip":
                return self._empty(index, "skipped-grayscale")
            pixels = self._square(image, index)
        except Exception as exc:  # a bad file must never stop a training run
            if not self._warned[index]:
                self._warned[index] = True
                reason = str(exc) or type(exc).__name__
                if str(path) not in reason:
                    reason = f"{path}: {reason}"
                log.warning("unreadable image skipped: %s", reason)
            return self._empty(index, "unreadable")
        # numpy, not torch, for the copies: in the main process (num_workers=0) torch would
        # spread these small copies over its intra-op threads, 100x slower on a busy machine.
        if gray:
            chw = np.repeat(pixels[None], 3, axis=0)
        else:
            chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        rgb = torch.from_numpy(chw)
        return {"rgb": rgb, "index": index, "status": "grayscale" if gray else "ok"}

    def _empty(self, index: int, status: str) -> dict[str, Any]:
        S = self.image_size
        return {"rgb": torch.zeros(3, S, S, dtype=torch.uint8), "index": index, "status": status}

    def _square(self, image: np.ndarray, index: int) -> np.ndarray:
        S = self.image_size
        if self.resize == "squash":
            return _resize(image, (S, S))
        H, W = image.shape[:2]
        scale = S / min(H, W)
        rw, rh = max(S, round(W * scale)), max(S, round(H * scale))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        x0, y0 = int(rng.integers(0, rw - S + 1)), int(rng.integers(0, rh - S + 1))
        flip = bool(rng.random() < 0.5)
        # Resizing only the crop's box equals cropping the full resize, at a fraction of the cost.
        sx, sy = W / rw, H / rh
        box = (x0 * sx, y0 * sy, (x0 + S) * sx, (y0 + S) * sy)
        out = _resize(image, (S, S), box)
        return np.ascontiguousarray(out[:, ::-1]) if flip else out


# --------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """The usable samples of one loader batch.

    Attributes
    ----------
    rgb : Tensor
        uint8 (N, 3, S, S); N may be below the batch size, or 0, when items were dropped.
    indices : Tensor
        int64 (N,), the dataset indices of ``rgb``.
    skipped : dict of str to int
        Items dropped from this batch, by status: ``"unreadable"`` and ``"skipped-grayscale"``
        (both keys always present).
    grayscale : int
        Kept gray samples in ``rgb`` (their ab is 0).
    """

    rgb: torch.Tensor
    indices: torch.Tensor
    skipped: dict[str, int]
    grayscale: int

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def pin_memory(self) -> Batch:
        """Page-locked copies of the tensors (``DataLoader(pin_memory=True)`` calls this)."""
        return Batch(
            self.rgb.pin_memory(), self.indices.pin_memory(), dict(self.skipped), self.grayscale
        )


def collate(samples: list[dict[str, Any]]) -> Batch:
    """Stack the usable samples of ``dataset[i]`` dicts into a `Batch`, counting the others."""
    skipped = dict.fromkeys(_DROPPED, 0)
    kept = []
    for sample in samples:
        if sample["status"] in skipped:
            skipped[sample["status"]] += 1
        else:
            kept.append(sample)
    if kept:
        rgb = torch.from_numpy(np.stack([s["rgb"].numpy() for s in kept]))  # numpy: see above
    else:
        shape = samples[0]["rgb"].shape if samples else (3, 0, 0)
        rgb = torch.zeros((0, *shape), dtype=torch.uint8)
    indices = torch.tensor([s["index"] for s in kept], dtype=torch.int64)
    gray = sum(s["status"] == "grayscale" for s in kept)
    return Batch(rgb, indices, skipped, gray)


# --------------------------------------------------------------------------------------------
# Loading


def _seed_worker(worker_id: int, rank: int) -> None:
    """Seed a worker's random, numpy and torch RNGs from (seed, epoch, rank, worker id).

    The dataset's own augmentation does not use them, but anything else a worker draws is then
    the same on a resumed run as on the uninterrupted one.
    """
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    seed, epoch = getattr(dataset, "seed", 0), getattr(dataset, "epoch", 0)
    state = np.random.SeedSequence([seed, epoch, rank, worker_id]).generate_state(2, np.uint32)
    random.seed(int(state[0]) << 32 | int(state[1]))
    np.random.seed(int(state[0]))  # noqa: NPY002 - third-party code reads the legacy global RNG
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def make_loader(
    dataset: ColorizationDataset,
    sampler: ResumableSampler,
    batch_size: int,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader of `Batch` es over ``dataset`` in ``sampler``'s order.

    Call ``dataset.set_epoch(e)`` and ``sampler.set_epoch(e)`` (and ``sampler.set_start`` when
    resuming) before iterating it for epoch e: workers are started anew each epoch
    (``persistent_workers=False``), so they see the dataset's current epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Its own generator: creating an iterator then never draws from the global torch RNG,
    # which would shift the model's random stream between a resumed and an uninterrupted run.
    generator = torch.Generator()
    generator.manual_seed(dataset.seed)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra["prefetch_factor"] = 4
        extra["worker_init_fn"] = functools.partial(_seed_worker, rank=sampler.rank)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
        generator=generator,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# To the network's encoding


def batch_to_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a uint8 RGB batch to the generator's input and target, on its own device.

    Parameters
    ----------
    rgb : Tensor
        uint8 (N, 3, H, W) sRGB, on any device.

    Returns
    -------
    L : Tensor
        float32 (N, 1, H, W) in [0, 1] = L*/100.
    ab : Tensor
        float32 (N, 2, H, W) = (ab + 128) / 255, the generator's sigmoid scale (gray: 128/255).
    """
    if rgb.dtype != torch.uint8:
        raise TypeError(f"rgb must be uint8, got {rgb.dtype}")
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape (N, 3, H, W), got {tuple(rgb.shape)}")
    lab = rgb_to_lab(rgb.to(torch.float32) / 255.0, dim=1)
    L = lab[:, :1] / 100.0
    ab = (lab[:, 1:] + 128.0) / 255.0
    return L.contiguous(), ab.contiguous()
