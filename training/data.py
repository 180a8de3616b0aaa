"""Training data: image files -> uint8 RGB batches -> (L, ab) on the training device.

The authors' pipeline (docs: chromagan-spec.md §4.1) reads each image, squashes it to 224x224
(anisotropic bilinear resize, no crop) and converts it to Lab; the network input is L*/100 and its
target (a* + 128) / 255. Here the workers only decode and resize, and hand over uint8 RGB (4x less
to copy than float Lab); :func:`batch_to_lab` converts whole batches on the training device.

Differences from the authors, on purpose:

* Shrinking is antialiased (bilinear with a widened support, Pillow's ``BILINEAR``), as the
  plugin's inference does (:mod:`napari_chromagan.colorize`), so the network trains on the
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from napari_chromagan.color import rgb_to_lab
from napari_chromagan.imageio import IMAGE_SUFFIXES, image_files_in, read_image
from napari_chromagan.normalize import resolve_normalization

__all__ = [
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
GRAY_TOLERANCE = 2  # an RGB image whose channels differ by at most this much (8-bit) is gray
_LIST_CHECK = 100  # a list file is refused when none of its first entries exists


# --------------------------------------------------------------------------------------------
# Finding the images


def find_images(source: str | os.PathLike[str]) -> list[Path]:
    """List the training images of a folder or a list file.

    Parameters
    ----------
    source : str or path-like
        A folder, searched as :func:`napari_chromagan.imageio.image_files_in` does (recursively,
        the plugin's image suffixes, hidden files and folders skipped, sorted); or a text file
        listing image paths, one per line (relative paths are taken relative to the list file's
        folder; blank lines and lines starting with ``#`` are ignored; entries are kept as
        listed, in order, without checking their suffix); or a single image file.

    Returns
    -------
    list of Path

    Raises
    ------
    FileNotFoundError
        If `source` does not exist, or none of the first 100 entries of a list file exists.
    ValueError
        If no image was found, or the list file is not text.
    """
    path = Path(source)
    if path.is_dir():
        found = image_files_in(path)
        if not found:
            accepted = " ".join(sorted(IMAGE_SUFFIXES))
            raise ValueError(
                f"no images found in {path} (searched recursively, hidden files and folders "
                f"skipped; accepted suffixes: {accepted}); point to the folder that holds the "
                "images, or pass a text file listing them one per line"
            )
        return found
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such folder or file; pass a folder of images or a text file listing "
            "image paths one per line"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return _read_list(path)


def _read_list(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{list_file} is neither a folder, an image ({' '.join(sorted(IMAGE_SUFFIXES))}) nor a UTF-8 "
            "text file listing image paths one per line"
        ) from exc
    base = list_file.parent
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            paths.append(base / entry)  # an absolute entry stays absolute
    if not paths:
        raise ValueError(
            f"{list_file} lists no images; write one image path per line (relative paths are "
            f"taken relative to {base}; blank lines and '#' comments are ignored)"
        )
    # Checking every entry would stat a million files on a network disk; a list whose first
    # entries are all missing is almost surely relative to the wrong folder.
    if not any(p.exists() for p in paths[:_LIST_CHECK]):
        raise FileNotFoundError(
            f"{list_file}: none of its first {min(len(paths), _LIST_CHECK)} entries exists "
            f"(first: {paths[0]}); relative paths are taken relative to the list file's folder "
            f"{base}"
        )
    return paths


# --------------------------------------------------------------------------------------------
# Decoding one image


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


def _to_uint8(array: np.ndarray, rgb: bool) -> np.ndarray:
    """Any dtype -> uint8, as the plugin maps intensities (``normalize`` ``"auto"``)."""
    if array.dtype == np.uint8:
        return array
    norm = resolve_normalization(array, "auto", rgb=rgb, leading_ndim=0)
    unit = np.nan_to_num(norm.apply(array), nan=0.0)
    return (unit * 255.0 + 0.5).astype(np.uint8)


def _unit_alpha(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype.kind in "ui":
        return alpha.astype(np.float32) / float(np.iinfo(alpha.dtype).max)
    return np.clip(np.nan_to_num(alpha.astype(np.float32), nan=1.0), 0.0, 1.0)


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """Read ``path`` -> (uint8 (H, W) if gray else (H, W, 3), is_gray).

    EXIF orientation is applied, palettes expanded (``read_image``); the first page of a stack
    is used; alpha is composited on white; 16-bit and float data are mapped to 8 bits.
    """
    array = read_image(path)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] > 4:
        array = np.moveaxis(array, 0, -1)  # planar (channels-first) TIFF
    while array.ndim > 3 or (array.ndim == 3 and array.shape[-1] > 4):
        array = array[0]  # first page / plane of a stack
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 and array.ndim != 3:
        raise ValueError(f"unexpected pixel array shape {array.shape}")
    alpha = None
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array, alpha = array[..., :-1], array[..., -1]
        if array.shape[-1] == 1:
            array = array[..., 0]
    image = _to_uint8(array, rgb=array.ndim == 3)
    if alpha is not None:
        a = _unit_alpha(alpha)
        if a.ndim < image.ndim:
            a = a[..., None]
        image = (image * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    if image.ndim == 2:
        return image, True
    if is_gray(image):
        gray = (image.sum(axis=-1, dtype=np.uint16) + 1) // 3
        return gray.astype(np.uint8), True
    return np.ascontiguousarray(image), False


def is_gray(rgb: np.ndarray) -> bool:
    """Whether an 8-bit RGB image (H, W, 3) is gray: its channels differ by at most
    `GRAY_TOLERANCE` at every pixel. Training and evaluation both skip (or keep) such files."""
    # Most colour photos are told apart on a sparse sample; only candidates get the full check.
    return (
        _channel_spread(rgb[::8, ::8]) <= GRAY_TOLERANCE and _channel_spread(rgb) <= GRAY_TOLERANCE
    )


def _channel_spread(rgb: np.ndarray) -> int:
    return int((rgb.max(axis=-1) - rgb.min(axis=-1)).max(initial=0))


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
            image, gray = _decode(path)
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
# Sampling


class ResumableSampler(torch.utils.data.Sampler[int]):
    """Seeded, sharded and resumable order of the dataset indices.

    Like ``DistributedSampler``: each epoch, a permutation drawn with
    ``torch.Generator().manual_seed(seed + epoch)`` (or ``range(length)`` without shuffling),
    padded by repetition to a multiple of ``world_size`` (or truncated, with ``drop_last``);
    rank r takes ``indices[r::world_size]``. In addition, ``set_start(n)`` skips the first n
    samples of this rank's shard in the current epoch only, so a run resumed mid-epoch sees
    exactly the samples the uninterrupted run would have.

    Parameters
    ----------
    length : int
        Dataset length.
    seed : int
        Shuffling seed; must be the same on every rank.
    shuffle : bool
        Permute the indices each epoch.
    rank, world_size : int
        This process's shard and the number of shards.
    drop_last : bool
        Drop the tail that does not split evenly, rather than padding.
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if drop_last and length < world_size:
            raise ValueError(f"drop_last with {length} samples for {world_size} ranks leaves none")
        self.length = int(length)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = drop_last
        if drop_last:
            self.num_samples = self.length // self.world_size
        else:
            self.num_samples = -(-self.length // self.world_size)
        self.total_size = self.num_samples * self.world_size
        self.epoch = 0
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``; a start set for another epoch is dropped."""
        if epoch != self.epoch:
            self._start = 0
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's shard, in the current epoch only.

        Call it after `set_epoch` for the epoch being resumed.
        """
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start must be in [0, {self.num_samples}], got {start}")
        self._start = int(start)

    @property
    def start(self) -> int:
        return self._start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.length, generator=g).tolist()
        else:
            indices = list(range(self.length))
        if self.total_size > self.length:
            padding = self.total_size - self.length
            indices += (indices * (padding // self.length + 1))[:padding]
        else:
            indices = indices[: self.total_size]
        return indices[self.rank : self.total_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self._start :])

    def __len__(self) -> int:
        return self.num_samples - self._start


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
