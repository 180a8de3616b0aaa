"""The engine over files (pipeline.iter_colorize_files) and the CLI that adapts it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import make_generator
from PIL import Image

from napari_chromagan.cli import main
from napari_chromagan.engine.colorize import Colorizer
from napari_chromagan.engine.memory import MemoryFallback
from napari_chromagan.engine.pipeline import Decoded, Failed, Written, iter_colorize_files
from napari_chromagan.errors import Cancelled
from napari_chromagan.files import imageio
from napari_chromagan.progress import Progress
from napari_chromagan.weights.checkpoint import save_checkpoint

SIZES = [(40, 56), (33, 47), (40, 56), (61, 20), (25, 25), (40, 56), (48, 31)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt", make_generator())


def _folder(root: Path, sizes=SIZES, stack: bool = True) -> Path:
    """Gray PNGs of mixed sizes, and a 3-plane uint16 TIFF stack in the middle of them."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(root / f"f{i}.png")
    if stack:
        tifffile.imwrite(
            root / "f2s.tif",
            rng.integers(0, 60000, (3, 30, 44)).astype(np.uint16),
            photometric="minisblack",
        )
    return root


def _cli(*args) -> int:
    return main(["colorize", *map(str, args), "-q"])


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: imageio.read_image(p) for p in sorted(folder.iterdir())}


def _record_batches(monkeypatch, row_by_row: bool = False):
    """Record the batch size of every network call; ``row_by_row`` makes the network batch-invariant."""
    sizes = []
    real = Colorizer.predict

    def predict(self, L, with_class=True):
        sizes.append(L.shape[0])
        if not row_by_row:
            return real(self, L, with_class=with_class)
        ab = torch.cat([real(self, L[i : i + 1], with_class=False)[0] for i in range(L.shape[0])])
        return ab, None

    monkeypatch.setattr(Colorizer, "predict", predict)
    return sizes


def test_batch_size_one_gives_each_files_own_colorize_result_bit_for_bit(tmp_path, weights):
    folder = _folder(tmp_path / "in")
    assert _cli(folder, "-o", tmp_path / "out", "--weights", weights, "--batch-size", "1") == 0
    engine = Colorizer.from_checkpoint(weights, "cpu")
    written = _outputs(tmp_path / "out")
    assert len(written) == len(SIZES) + 1
    for source in sorted(folder.iterdir()):
        expected = engine.colorize(imageio.read_image(source), batch_size=1, with_class=False).rgb
        out = f"{source.stem}_colorized{'.tif' if source.suffix == '.tif' else '.png'}"
        np.testing.assert_array_equal(written[out], expected, err_msg=out)


def test_small_files_of_mixed_sizes_are_packed_and_give_the_same_pixels(
    tmp_path, weights, monkeypatch
):
    folder = _folder(tmp_path / "in")
    one = _record_batches(monkeypatch, row_by_row=True)
    assert _cli(folder, "-o", tmp_path / "one", "--weights", weights, "--batch-size", "1") == 0
    assert set(one) == {1}
    packed = _record_batches(monkeypatch, row_by_row=True)
    assert _cli(folder, "-o", tmp_path / "packed", "--weights", weights, "--batch-size", "3") == 0
    # f0..f2 packed; the stack (f2s) in its own batch of 3 planes; then f3..f5, and f6
    assert packed == [3, 3, 3, 1]
    # with a network that does not depend on its batch, packing changes no pixel
    one_out, packed_out = _outputs(tmp_path / "one"), _outputs(tmp_path / "packed")
    assert one_out.keys() == packed_out.keys()
    for name in one_out:
        np.testing.assert_array_equal(packed_out[name], one_out[name], err_msg=name)


def test_packed_network_calls_differ_from_single_ones_by_at_most_one_level(tmp_path, weights):
    folder = _folder(tmp_path / "in", stack=False)
    assert _cli(folder, "-o", tmp_path / "one", "--weights", weights, "--batch-size", "1") == 0
    assert _cli(folder, "-o", tmp_path / "packed", "--weights", weights, "--batch-size", "8") == 0
    one, packed = _outputs(tmp_path / "one"), _outputs(tmp_path / "packed")
    diffs = [np.abs(packed[n].astype(int) - one[n].astype(int)) for n in one]
    assert max(int(d.max()) for d in diffs) <= 1  # the last bits of a batch's arithmetic
    assert sum(int((d > 0).sum()) for d in diffs) <= 0.01 * sum(d.size for d in diffs)


def test_out_of_memory_halves_the_batch_and_gives_the_pixels_of_that_batch_size(
    tmp_path, weights, monkeypatch, capsys
):
    folder = _folder(tmp_path / "in", stack=False)
    assert _cli(folder, "-o", tmp_path / "at2", "--weights", weights, "--batch-size", "2") == 0
    sizes = []
    real = Colorizer.predict

    def predict(self, L, with_class=True):  # room for 2 planes at a time
        sizes.append(L.shape[0])
        if L.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(self, L, with_class=with_class)

    monkeypatch.setattr(Colorizer, "predict", predict)
    capsys.readouterr()
    assert _cli(folder, "-o", tmp_path / "oom", "--weights", weights, "--batch-size", "8") == 0
    err = capsys.readouterr().err
    assert "warning: out of memory on cpu at batch size 8: finished with batch size 2" in err
    # 7 files: one pack of 7 fails, then 4 (fails), then packs of 2, 2, 2 and the last one
    assert sizes == [7, 4, 2, 2, 2, 1]
    at2, oom = _outputs(tmp_path / "at2"), _outputs(tmp_path / "oom")
    assert at2.keys() == oom.keys() and len(oom) == len(SIZES)
    for name in at2:
        np.testing.assert_array_equal(oom[name], at2[name], err_msg=name)


def _jobs(tmp_path: Path, n: int):
    rng = np.random.default_rng(1)
    return [
        (rng.integers(0, 256, (24, 30), dtype=np.uint8), tmp_path / f"{i}.npy") for i in range(n)
    ]


def test_cancel_stops_the_file_pipeline_before_its_next_batch(tmp_path, monkeypatch):
    sizes = _record_batches(monkeypatch)
    colorizer = Colorizer(make_generator(), "cpu")
    written = []

    def write(job, decoded, result, used):
        assert result.lab is None and result.rgb.shape == (24, 30, 3)  # only RGB was kept
        np.save(decoded.target, result.rgb)
        written.append(decoded.target)

    cancel = threading.Event()
    events = iter_colorize_files(
        MemoryFallback(lambda d: colorizer, "cpu", 2),
        _jobs(tmp_path, 9),
        lambda job: Decoded(job[0], job[1]),
        write,
        cancel=cancel,
    )
    batches_at_cancel = None

    def follow() -> None:
        nonlocal batches_at_cancel
        for event in events:
            assert isinstance(event, Written)
            if batches_at_cancel is None:
                cancel.set()
                batches_at_cancel = len(sizes)

    with pytest.raises(Cancelled, match=r"colourisation cancelled after \d of 9 files"):
        follow()
    # no batch starts after Cancel; every file colourised before it is written
    assert len(sizes) == batches_at_cancel < 5 and set(sizes) == {2}
    assert len(written) == 2 * len(sizes)


def test_a_file_that_fails_is_reported_and_the_others_go_on(tmp_path):
    colorizer = Colorizer(make_generator(), "cpu")
    jobs = _jobs(tmp_path, 3)
    jobs[1] = (np.zeros((4, 5, 2), np.uint8), tmp_path / "bad.npy")  # two channels: refused

    def write(job, decoded, result, used):
        assert result.lab.L.shape == (24, 30) and result.lab.ab.shape == (24, 30, 2)  # keep_lab
        np.save(decoded.target, result.rgb)

    events = list(
        iter_colorize_files(
            MemoryFallback(lambda d: colorizer, "cpu", 8),
            jobs,
            lambda job: Decoded(job[0], job[1]),
            write,
            keep_lab=True,
        )
    )
    # the file that cannot be colourised is reported at once; the others when written
    assert [type(e) for e in events] == [Failed, Written, Written]
    assert "looks like 2 channels" in str(events[0].error) and events[0].job is jobs[1]
    assert not any(isinstance(e, Progress) for e in events)  # single planes: no plane progress


def test_colorize_callback_cancel_stops_mid_stream(monkeypatch):
    sizes = _record_batches(monkeypatch)
    colorizer = Colorizer(make_generator(), "cpu")
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 2:
            cancel.set()

    stack = np.random.default_rng(2).integers(0, 256, (6, 20, 20), dtype=np.uint8)
    with pytest.raises(Cancelled, match="after 2 of 6 planes"):
        colorizer.colorize(stack, batch_size=2, progress=progress, cancel=cancel)
    assert seen == [(0, 6), (2, 6)] and sizes == [2]


def test_chroma_blend_cancel_stops_mid_stream_in_both_adapters():
    from napari_chromagan.edit.blend import (
        BlendParams,
        apply_to_stack,
        iter_apply_to_stack,
        render_rgb,
    )

    rng = np.random.default_rng(3)
    L = rng.uniform(20, 80, (4, 12, 12)).astype(np.float32)
    ab = rng.normal(0, 20, (4, 12, 12, 2)).astype(np.float32)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 1:
            cancel.set()

    with pytest.raises(Cancelled, match="chroma blend cancelled after 1 of 4 planes"):
        apply_to_stack(L, ab, BlendParams(), progress=progress, cancel=cancel)
    assert seen == [0, 1]
    # the worker's form: the same events, and closing it is the cancel (nothing more is rendered)
    out = np.zeros((*L.shape, 3), np.uint8)
    steps = iter_apply_to_stack(L, ab, BlendParams(), out=out)
    assert [next(steps), next(steps)] == [Progress(0, 4), Progress(1, 4)]
    steps.close()
    np.testing.assert_array_equal(out[0], render_rgb(L[0], ab[0], BlendParams()))
    assert not out[1:].any()
