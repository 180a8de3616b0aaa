"""The ``colorize`` subcommand: colourise image files and folders into OUTDIR.

A thin adapter of the engine's file pipeline (:func:`napari_chromagan.engine.pipeline.iter_colorize_files`):
this module plans the jobs (inputs, output names, existing outputs, the torchrun share), loads
the weights, and turns the pipeline's events into progress bars, messages and an exit code.
How one file is read and written is in ``_colorize_files.py``, the arguments in
``_colorize_args.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_chromagan.cli._colorize_args import register_colorize
from napari_chromagan.cli._colorize_files import FileIO, Job
from napari_chromagan.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    _error,
    _list_paths,
    _plural,
    _UsageError,
    _write,
)
from napari_chromagan.cli._torchrun import _remove_stale_parts, _torchrun_env, shard
from napari_chromagan.device import rank_device
from napari_chromagan.errors import cli_text

__all__ = ["register_colorize", "run_colorize"]


@dataclass
class _Console:
    """Where the messages go: information lines (not with --quiet) and errors, with the rank's tag."""

    quiet: bool
    tag: str = ""

    def info(self, message: str) -> None:
        if not self.quiet:
            _write(f"{PROG}: {self.tag}{message}")

    def warning(self, message: str) -> None:
        _write(f"{PROG}: {self.tag}warning: {message}")

    def error(self, message: str) -> None:
        _error(f"{self.tag}{message}")


@dataclass
class _Plan:
    jobs: list[Job]
    out_dir: Path
    taken: set[str]
    skipped: int = 0


@dataclass
class _Tally:
    done: int = 0
    skipped: int = 0
    blank: list[Path] = field(
        default_factory=list
    )  # written, but every pixel was NaN or inf: uniform gray
    failures: list[Path] = field(default_factory=list)


def run_colorize(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    rank, world_size, local_rank = _torchrun_env()
    say = _Console(args.quiet, f"[rank {rank}/{world_size}] " if world_size > 1 else "")
    _check_range(args)
    plan = _plan(args, say, rank, world_size)
    if not plan.jobs:
        return EXIT_OK

    from napari_chromagan.files.atomic import check_writable

    # a read-only or misplaced output folder fails now, not once per image after the work
    check_writable(
        plan.out_dir,
        what="the output folder",
        fix="choose another folder with -o, or make this one writable",
    )
    policy, pending = _load(
        args, say, rank_device(args.device, local_rank) if world_size > 1 else args.device
    )
    tally = _Tally(skipped=plan.skipped)
    files = FileIO(args, plan.taken)
    try:
        _run(policy, pending, plan, files, args, say, tally, quiet_bar=args.quiet or rank > 0)
    except KeyboardInterrupt:
        done = len(files.completed)
        complete = done + tally.skipped
        say.error(
            f"interrupted after {done} of {_plural(len(plan.jobs), 'image')} of this run "
            f"({complete} output{'s are' if complete != 1 else ' is'} complete in {plan.out_dir}; nothing is "
            "half-written). Run the same command with --resume to colourise the rest"
        )
        return EXIT_INTERRUPTED

    seconds = time.perf_counter() - start
    summary = f"colourised {_plural(tally.done, 'image')} into {plan.out_dir} in {seconds:.1f} s"
    notes = [f"{tally.skipped} skipped: output exists"] if tally.skipped else []
    if tally.blank:
        notes.append(
            f"{len(tally.blank)} had no finite pixel (all NaN or inf) and came out uniform gray"
        )
    say.info(f"{summary} ({'; '.join(notes)})" if notes else summary)
    if tally.failures:
        say.error(f"{len(tally.failures)} of {_plural(len(plan.jobs), 'image')} failed")
        return EXIT_FAILED
    return EXIT_OK


def _check_range(args: argparse.Namespace) -> None:
    if args.value_range is not None:
        low, high = args.value_range
        if not high > low:
            raise _UsageError(f"--range needs LOW < HIGH, got {low:g} {high:g}")
        if args.normalization not in ("auto", "manual"):
            raise _UsageError(
                f"--range applies to --normalization manual, not {args.normalization}"
            )
    elif args.normalization == "manual":
        raise _UsageError("--normalization manual needs --range LOW HIGH")


def _plan(args: argparse.Namespace, say: _Console, rank: int, world_size: int) -> _Plan:
    """The jobs of this run (this rank's share), after the outputs that exist are dealt with."""
    out_dir = Path(args.output).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise _UsageError(f"output {out_dir} exists and is not a folder")
    inputs, outputs = _inputs_and_outputs(args, out_dir, say, world_size)
    # Names are given over the whole list (so clashes resolve the same way on every rank),
    # then each rank keeps its share; from here on only this rank's files are looked at.
    taken = {o.name.casefold() for o in outputs}
    total_inputs = len(inputs)
    if world_size > 1:
        inputs, outputs = shard(inputs, rank, world_size), shard(outputs, rank, world_size)
        say.info(f"{len(inputs)} of {_plural(total_inputs, 'image')} are this process's share")
        if not inputs:
            return _Plan([], out_dir, taken)

    existing = [o for o in outputs if o.exists()]
    if existing and not (args.overwrite or args.skip_existing):
        raise FileExistsError(
            f"{say.tag}{_plural(len(existing), 'output')} already "
            f"{'exists' if len(existing) == 1 else 'exist'} ({_list_paths(existing)}); "
            "pass --overwrite to replace them or --skip-existing to keep them"
        )
    jobs = [Job(i, o) for i, o in zip(inputs, outputs, strict=True)]
    skipped = 0
    if args.skip_existing:
        found = set(existing)
        stale = _remove_stale_parts([o for o in outputs if o not in found])
        if stale:
            say.info(f"removed {_plural(stale, 'temporary file')} left by an interrupted run")
        if existing:
            jobs = [job for job in jobs if job.target not in found]
            skipped = len(inputs) - len(jobs)
            say.info(f"skipping {_plural(skipped, 'image')} whose output already exists")
    if not jobs:
        say.info(f"nothing to do: every output exists in {out_dir}")
    return _Plan(jobs, out_dir, taken, skipped)


def _inputs_and_outputs(
    args: argparse.Namespace, out_dir: Path, say: _Console, world_size: int
) -> tuple[list[Path], list[Path]]:
    """The images found and their planned outputs, leaving out inputs that are this run's outputs."""
    from napari_chromagan.files import imageio

    inputs = imageio.collect_inputs(args.inputs)
    roots = [Path(a) for a in args.inputs if Path(a).is_dir()]
    if world_size > 1:
        # Another rank's fresh outputs would turn up in this rank's search, and the ranks
        # would then share out different lists.
        real_out = Path(os.path.realpath(out_dir))
        inside = [r for r in roots if real_out.is_relative_to(os.path.realpath(r))]
        if inside:
            raise _UsageError(
                f"under torchrun, OUTDIR {out_dir} must not be inside an input folder "
                f"({inside[0]}); choose an output folder outside it"
            )
    outputs = imageio.output_paths(inputs, out_dir, args.format, roots=roots)
    # An earlier run's outputs found again in a searched folder must not be overwritten while
    # they are being read: leave out any input that is one of this run's outputs.
    planned = {os.path.realpath(o) for o in outputs}
    own = [p for p in inputs if os.path.realpath(p) in planned]
    if own:
        inputs = [p for p in inputs if os.path.realpath(p) not in planned]
        say.info(
            f"ignoring {_plural(len(own), 'input')} that would be overwritten by this run's outputs"
        )
        if not inputs:
            raise FileNotFoundError("no images left to colourise")
        outputs = imageio.output_paths(inputs, out_dir, args.format, roots=roots)
    return inputs, outputs


def _load(args: argparse.Namespace, say: _Console, device: str) -> tuple[Any, list[str]]:
    """The out-of-memory policy holding the colourizer for ``device``, and the list of its reports."""
    from napari_chromagan.device import select_device
    from napari_chromagan.engine.colorize import Colorizer
    from napari_chromagan.engine.memory import MemoryFallback
    from napari_chromagan.weights.lookup import default_weights_note

    dev, _ = select_device(device)  # a wrong device fails before a large checkpoint is read
    compile_, cuda_graphs = _fast_path_flags(args, dev.type, say.info)

    def colorizer_for(where: str) -> Colorizer:
        options = {"precision": args.precision, "network_size": args.network_size}
        if where == "cpu" and dev.type != "cpu":  # the out-of-memory fallback: no compiling there
            return Colorizer.from_checkpoint(args.weights, "cpu", **options)
        return Colorizer.from_checkpoint(
            args.weights, where, compile=compile_, cuda_graphs=cuda_graphs, **options
        )

    pending: list[str] = []
    policy = MemoryFallback(colorizer_for, device, args.batch_size, pending.append)
    colorizer = policy.colorizer
    say.info(f"device: {colorizer.device_info}")
    say.info(f"weights: {colorizer.weights} (network size {colorizer.config.image_size})")
    if (note := default_weights_note(colorizer.weights)) is not None:
        say.info(note)
    return policy, pending


def _run(
    policy: Any,
    pending: list[str],
    plan: _Plan,
    files: FileIO,
    args: argparse.Namespace,
    say: _Console,
    tally: _Tally,
    quiet_bar: bool,
) -> None:
    """Drive the pipeline over the plan's jobs: bars, messages and the tally of what happened."""
    from tqdm import tqdm

    from napari_chromagan.engine.pipeline import Failed, Note, Skipped, Written, iter_colorize_files
    from napari_chromagan.progress import Progress

    bar = tqdm(
        total=len(plan.jobs),
        unit="image",
        desc=f"colourising {say.tag}".rstrip(),
        file=sys.stderr,
        # ranks share a terminal: one bar (rank 0's share) rather than several fighting
        disable=True if quiet_bar else None,
        dynamic_ncols=True,
    )
    planes = _PlaneBar(disabled=bool(bar.disable))
    events = iter_colorize_files(
        policy,
        plan.jobs,
        files.read,
        files.write,
        normalization=args.normalization,
        value_range=None if args.value_range is None else tuple(args.value_range),
        keep_lab=getattr(args, "hints", None) is not None,
        name=lambda job: job.source.name,
        pending=pending,
    )
    try:
        for event in events:
            if isinstance(event, Progress):
                planes.show(event)
            elif isinstance(event, str):
                say.warning(event)
            elif isinstance(event, Note):
                say.info(event.message)
            elif isinstance(event, (Written, Skipped, Failed)):
                planes.close()
                _count(event, tally, say)
                bar.set_postfix_str(event.job.source.name, refresh=False)
                bar.update(1)
    finally:
        events.close()
        planes.close()
        bar.close()


def _count(event: Any, tally: _Tally, say: _Console) -> None:
    """Tally one file's outcome and say what needs saying."""
    from napari_chromagan.engine.pipeline import Failed, Skipped

    source = event.job.source
    if isinstance(event, Skipped):
        say.info(event.reason)
        tally.skipped += 1
    elif isinstance(event, Failed):
        tally.failures.append(source)
        message = cli_text(event.error)
        if _is_memory_error(event.error):
            message = f"out of memory ({message.splitlines()[0]})"
        if str(source) not in message:
            message = f"{source}: {message}"
        say.error(message)
    else:
        tally.done += 1
        if event.warning is not None:
            _write(f"{PROG}: warning: {source}: {event.warning}")
        if event.blank:
            tally.blank.append(source)


def _is_memory_error(exc: BaseException) -> bool:
    from napari_chromagan.engine.memory import is_out_of_memory

    return isinstance(exc, MemoryError) or is_out_of_memory(exc)


class _PlaneBar:
    """The second bar: the planes of the stack being colourised."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.bar: Any = None

    def show(self, event: Any) -> None:
        from tqdm import tqdm

        if event.total <= 1:
            return
        if self.bar is None:
            self.bar = tqdm(
                total=event.total,
                unit="plane",
                desc=event.item,
                file=sys.stderr,
                leave=False,
                position=1,
                disable=True if self.disabled else None,
                dynamic_ncols=True,
            )
        self.bar.update(event.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fast_path_flags(
    args: argparse.Namespace, device_type: str, info: Callable[[str], None]
) -> tuple[bool, bool]:
    """``(compile, cuda_graphs)`` for this device, saying so where a flag does nothing useful,
    before any time is spent compiling."""
    compile_, cuda_graphs = bool(args.compile), bool(args.cuda_graphs)
    if cuda_graphs and device_type != "cuda":
        info(
            f"note: --cuda-graphs does nothing on {device_type}: CUDA graphs need a CUDA GPU. Ignored"
            + (
                "; --compile still compiles"
                if compile_
                else " (add --compile to compile the network anyway)"
            )
        )
        cuda_graphs = False
    if compile_ and device_type != "cuda":
        info(
            f"note: --compile on {device_type}: the first batch of each size waits for torch.compile "
            "(5-20 s on a 2-core CPU), after which the default weights ran 1.1-1.3x faster end to end "
            "there: it pays on runs of thousands of images, not on a few"
        )
    return compile_, cuda_graphs
