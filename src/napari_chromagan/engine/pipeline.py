"""The engine over many files: decode ahead, pack small images into batches, write behind.

:func:`iter_colorize_files` is the command line's engine, one generator of events:

    files --read (a worker thread)--> arrays --check, normalise--> targets
          --batches of planes on the device (run_batch)--> full-resolution RGB
          --write (a worker thread)--> files

* Decoding runs ahead of the network in one thread and writing behind it in another, so the
  network is not kept waiting by either (PNG encoding and ``fsync`` release the GIL).
* Small single-plane images (at most :data:`PACK_PIXELS` pixels) are packed ``batch_size`` to a
  network call; a stack's planes go ``batch_size`` at a time in their own calls, as
  :meth:`Colorizer.colorize <napari_chromagan.engine.colorize.Colorizer.colorize>` does them.
* Only RGB is kept unless ``keep_lab`` (colour hints need L* and a*b*).
* Out of memory, the shared policy (:class:`~napari_chromagan.engine.memory.MemoryFallback`) halves
  the batch, then moves to the CPU; the failed batch is run again in smaller pieces.

A file that fails (unreadable, a shape that cannot be colourised, a failed write) is reported
and the others go on; damaged weights (:class:`~napari_chromagan.errors.CheckpointError`) and
interruptions (``KeyboardInterrupt``) stop the run. ``cancel`` stops it before the next batch
(:class:`~napari_chromagan.errors.Cancelled`), after the writes under way have finished.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_chromagan.engine.inputs import check_image
from napari_chromagan.engine.normalize import Mode, Normalization, resolve_normalization
from napari_chromagan.engine.planes import Target, blank_planes_message, run_batch
from napari_chromagan.errors import Cancelled, CheckpointError
from napari_chromagan.progress import CancelEvent, Progress, check_cancel

if TYPE_CHECKING:  # pragma: no cover
    from napari_chromagan.engine.colorize import Colorizer
    from napari_chromagan.engine.memory import MemoryFallback
    from napari_chromagan.engine.result import ColorizeResult

__all__ = [
    "PACK_PIXELS",
    "Decoded",
    "Failed",
    "FileResult",
    "Note",
    "Skipped",
    "Written",
    "iter_colorize_files",
]

# Single-plane images up to this size share network calls: beyond it the network's share of the
# work is small anyway, and holding batch_size such images at once would cost memory.
PACK_PIXELS = 1 << 20


@dataclass(frozen=True)
class Decoded:
    """What ``read`` returns: the array to colourise, where it goes, and what to tell the user.

    ``skip``: a reason not to colourise it (the output it would go to exists), or None.
    """

    image: Any
    target: Any
    notes: tuple[str, ...] = ()
    skip: str | None = None


@dataclass
class FileResult:
    """What ``write`` receives for one file.

    ``rgb``: uint8 (*stack, H, W, 3); ``lab``: the whole :class:`ColorizeResult` when the run keeps
    L* and a*b* (``keep_lab``), else None; ``blank``: every pixel was NaN or inf.
    """

    rgb: np.ndarray
    normalization: Normalization
    device: str
    weights: str | None
    blank: bool
    lab: ColorizeResult | None = None


@dataclass(frozen=True)
class Note:
    """Something to tell the user about ``job`` (not an error)."""

    job: Any
    message: str


@dataclass(frozen=True)
class Skipped:
    job: Any
    reason: str


@dataclass(frozen=True)
class Failed:
    job: Any
    error: BaseException


@dataclass(frozen=True)
class Written:
    """``job``'s output was written to ``target``.

    ``warning`` says which planes came out uniform gray (no finite pixel), if any; ``blank``:
    all of them did.
    """

    job: Any
    target: Any
    warning: str | None = None
    blank: bool = False


Event = Progress | Note | Skipped | Failed | Written | str


@dataclass
class _Item:
    job: Any
    decoded: Decoded
    target: Target
    colorizer: Colorizer | None = None
    failed: bool = False


def iter_colorize_files(
    policy: MemoryFallback,
    jobs: Sequence[Any],
    read: Callable[[Any], Decoded],
    write: Callable[[Any, Decoded, FileResult, Colorizer], None],
    *,
    normalization: Mode = "auto",
    value_range: tuple[float, float] | None = None,
    keep_lab: bool = False,
    name: Callable[[Any], str] = str,
    cancel: CancelEvent | None = None,
    pending: list[str] | None = None,
) -> Generator[Event, None, None]:
    """Colourise ``jobs`` (in order) with ``read`` and ``write``; yield what happens to each.

    Parameters
    ----------
    policy : MemoryFallback
        The colourizer and batch size to use, and what to do when memory runs out.
    jobs : sequence
        Anything ``read``, ``write`` and ``name`` understand (the CLI's (source, target) pairs).
    read : callable
        ``job -> Decoded``, run in the reader thread.
    write : callable
        ``(job, decoded, FileResult, colorizer) -> None``, run in the writer thread, one file at
        a time and in order.
    normalization, value_range
        How intensities map to L* (see :func:`~napari_chromagan.engine.normalize.resolve_normalization`).
    keep_lab : bool
        Keep each file's L* and a*b* (``FileResult.lab``); otherwise only RGB is made.
    name : callable
        ``job -> str``, the ``item`` of a stack's :class:`Progress` events.
    pending : list, optional
        The list the policy's ``warn`` appends its reports to; they are yielded as ``str``.

    Yields
    ------
    One :class:`Written`, :class:`Skipped` or :class:`Failed` per job, after its :class:`Note`
    events: in the jobs' order, except that a job that cannot be read or colourised is reported
    as soon as that is known; for stacks, :class:`Progress` in planes; the policy's reports as
    ``str``.
    """
    run = _Run(policy, len(jobs), keep_lab, name, cancel, pending if pending is not None else [])
    yield from run.all(jobs, read, write, normalization, value_range)


class _Run:
    """The state of one :func:`iter_colorize_files` run."""

    def __init__(
        self,
        policy: MemoryFallback,
        total: int,
        keep_lab: bool,
        name: Callable[[Any], str],
        cancel: CancelEvent | None,
        pending: list[str],
    ) -> None:
        self.policy, self.total, self.keep_lab, self.name = policy, total, keep_lab, name
        self.cancel, self.pending = cancel, pending
        self.writes: collections.deque[tuple[_Item, Future[None]]] = collections.deque()
        self.stop = (
            threading.Event()
        )  # set when a write is interrupted: the later ones do not start
        self.done = 0

    def all(
        self,
        jobs: Sequence[Any],
        read: Callable,
        write: Callable,
        normalization: Mode,
        value_range: Any,
    ) -> Generator[Event, None, None]:
        lookahead = 2 * self.policy.first_batch + 2
        reader = ThreadPoolExecutor(1, thread_name_prefix="napari-chromagan-read")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="napari-chromagan-write")
        self.write_fn = write

        def decode(job: Any) -> tuple[Decoded, Any, bool, Normalization | None]:
            decoded = read(job)
            if decoded.skip is not None:
                return decoded, None, False, None
            is_rgb, squeeze = check_image(decoded.image, None)
            image = decoded.image[..., 0] if squeeze else decoded.image
            norm = resolve_normalization(image, normalization, value_range=value_range, rgb=is_rgb)
            return decoded, image, is_rgb, norm

        decodes: collections.deque[tuple[Any, Future[Any]]] = collections.deque()
        queue = iter(jobs)
        pack: list[_Item] = []
        try:
            while True:
                while len(decodes) < lookahead and (job := next(queue, None)) is not None:
                    decodes.append((job, reader.submit(decode, job)))
                if not decodes:
                    break
                job, future = decodes.popleft()
                item = yield from self._receive(job, future)
                if item is None:
                    continue
                H, W = item.target.spatial[-2:]
                if item.target.planes == 1 and H * W <= PACK_PIXELS:
                    pack.append(item)
                    if len(pack) >= self.policy.batch_size:
                        yield from self._run_pack(pack)
                        pack = []
                else:
                    yield from self._run_pack(pack)
                    pack = []
                    yield from self._run_stack(item)
                yield from self._written(block=len(self.writes) > lookahead)
            yield from self._run_pack(pack)
            yield from self._written(block=True, every=True)
            self.policy.finish()
            yield from _drain(self.pending)
        except Cancelled:
            self.writer.shutdown(wait=True)  # what was colourised is still written
            raise
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            self.writer.shutdown(wait=True, cancel_futures=True)

    def _receive(self, job: Any, future: Future[Any]) -> Generator[Event, None, _Item | None]:
        """The decoded job as an item ready for the network, or None (skipped or failed: said)."""
        try:
            decoded, image, is_rgb, norm = future.result()
        except Exception as exc:
            yield Failed(job, exc)
            return None
        for message in decoded.notes:
            yield Note(job, message)
        if decoded.skip is not None:
            yield Skipped(job, decoded.skip)
            return None
        try:
            target = Target.make(image, norm, is_rgb, keep_lab=self.keep_lab, num_classes=None)
        except MemoryError as exc:
            yield Failed(job, exc)
            return None
        return _Item(job, decoded, target)

    def _run_pack(self, pack: list[_Item]) -> Generator[Event, None, None]:
        if not pack:
            return
        yield from self._run_chunks([(item, slice(0, 1)) for item in pack])
        for item in pack:
            self._finish(item)

    def _run_stack(self, item: _Item) -> Generator[Event, None, None]:
        planes, label = item.target.planes, self.name(item.job)
        yield Progress(0, planes, item=label)
        size = self.policy.batch_size
        for start in range(0, planes, size):
            yield from self._run_chunks([(item, slice(start, min(start + size, planes)))])
            if item.failed:
                break
            yield Progress(min(start + size, planes), planes, item=label)
        self._finish(item)

    def _run_chunks(self, chunks: list[tuple[_Item, slice]]) -> Generator[Event, None, None]:
        """Run ``chunks`` as one network batch; out of memory, again in smaller pieces."""
        check_cancel(self.cancel, "colourisation", self.done, self.total, "files")
        groups = collections.deque([chunks])
        while groups:
            group = groups.popleft()
            if (
                sum(s.stop - s.start for _, s in group) > self.policy.batch_size
            ):  # made before a retry
                groups.extendleft(reversed(_split(group, self.policy.batch_size)))
                continue
            colorizer = self.policy.colorizer
            try:
                run_batch(
                    colorizer,
                    [(i.target, s) for i, s in group],
                    with_class=False,
                    pad_to=self.policy.batch_size,
                )
            except CheckpointError:
                raise  # damaged weights: every other file would fail too
            except Exception as exc:
                error = self._recover(exc)
                del exc  # drop the traceback's references to the failed batch's tensors
                yield from _drain(self.pending)
                if error is None:
                    groups.extendleft(reversed(_split(group, self.policy.batch_size)))
                    continue
                for item, _ in group:  # not memory, or no smaller batch left: these files fail
                    if not item.failed:
                        item.failed = True
                        yield Failed(item.job, error)
                continue
            for item, _ in group:
                item.colorizer = colorizer

    def _recover(self, exc: Exception) -> Exception | None:
        """None when the policy has a smaller batch (or the CPU) to try; else the error to report."""
        try:
            self.policy.recover(exc)
        except Exception as final:
            return final
        return None

    def _finish(self, item: _Item) -> None:
        """Hand a colourised item to the writer (a failed one was reported already)."""
        if item.failed:
            return
        colorizer, target = item.colorizer, item.target
        assert colorizer is not None  # set by _run_chunks for every item that did not fail
        result = FileResult(
            rgb=target.rgb.reshape(*target.spatial, 3),
            normalization=target.norm,
            device=str(colorizer.device),
            weights=colorizer.weights,
            blank=bool(target.blank.all()),
            lab=colorizer.result_of(target) if self.keep_lab else None,
        )
        self.writes.append((item, self.writer.submit(self._write, item, result, colorizer)))

    def _write(self, item: _Item, result: FileResult, colorizer: Colorizer) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt  # an earlier write was interrupted: start no more
        try:
            self.write_fn(item.job, item.decoded, result, colorizer)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self.stop.set()
            raise

    def _written(self, block: bool, every: bool = False) -> Generator[Event, None, None]:
        """Report finished writes in order: those done, waiting for the first when ``block``."""
        while self.writes and (block or self.writes[0][1].done()):
            item, future = self.writes.popleft()
            try:
                future.result()
            except Exception as exc:
                yield Failed(item.job, exc)
            else:
                self.done += 1
                blank = item.target.blank
                yield Written(
                    item.job, item.decoded.target, blank_planes_message(blank), bool(blank.all())
                )
            block = every


def _split(group: list[tuple[_Item, slice]], size: int) -> list[list[tuple[_Item, slice]]]:
    """``group``'s planes again, in batches of at most ``size`` planes (a target's stay contiguous)."""
    units = [(item, p) for item, s in group for p in range(s.start, s.stop)]
    batches = []
    for b in range(0, len(units), size):
        batch: list[tuple[_Item, slice]] = []
        for item, p in units[b : b + size]:
            if batch and batch[-1][0] is item and batch[-1][1].stop == p:
                batch[-1] = (item, slice(batch[-1][1].start, p + 1))
            else:
                batch.append((item, slice(p, p + 1)))
        batches.append(batch)
    return batches


def _drain(pending: list[str]) -> Generator[str, None, None]:
    while pending:
        yield pending.pop(0)
