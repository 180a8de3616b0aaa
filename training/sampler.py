"""The order of the training images: a seeded shuffle per epoch, sharded across processes,
that can start part-way through an epoch (an exact resume)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["ResumableSampler"]


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
