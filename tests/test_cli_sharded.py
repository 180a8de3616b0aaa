"""``colorize`` under torchrun: each process colourises its share of the files, and resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_S, make_generator
from PIL import Image

from napari_chromagan.cli import main, shard
from napari_chromagan.files import imageio
from napari_chromagan.weights.checkpoint import save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
H, W = 40, 56
N = 6


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "w.pt", make_generator())


@pytest.fixture(autouse=True)
def _no_torchrun(monkeypatch):
    """Start every test as a single process, whatever launched pytest."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def _images(folder: Path, n: int = N) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("n", [0, 1, 5, 6, 7, 23])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_is_a_balanced_deterministic_partition(n, world_size):
    items = [f"f{i:02d}" for i in range(n)]
    shares = [shard(items, rank, world_size) for rank in range(world_size)]
    assert sorted(x for share in shares for x in share) == items  # covers all, each once
    assert sum(len(share) for share in shares) == n  # disjoint
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    assert shares == [shard(list(items), rank, world_size) for rank in range(world_size)]
    for rank, share in enumerate(shares):
        assert share == [x for i, x in enumerate(items) if i % world_size == rank]
    assert shard(items, 0, 1) == items


@pytest.mark.parametrize(("rank", "world_size"), [(-1, 2), (2, 2), (0, 0)])
def test_shard_rejects_a_bad_rank(rank, world_size):
    with pytest.raises(ValueError, match="rank"):
        shard([1, 2, 3], rank, world_size)


def test_rank_writes_only_its_share_and_checks_only_its_outputs(
    tmp_path, capsys, weights, monkeypatch
):
    _images(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    # rank 0's outputs are in the way, but they are not this rank's business
    (out / "img0_colorized.png").write_bytes(b"rank 0's")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    argv = ["colorize", str(tmp_path / "in"), "-o", str(out), "--weights", str(weights)]
    code = main([*argv, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "img0_colorized.png",
        "img1_colorized.png",
        "img3_colorized.png",
        "img5_colorized.png",
    ]
    assert (out / "img0_colorized.png").read_bytes() == b"rank 0's"
    assert imageio.read_image(out / "img3_colorized.png").shape == (H, W, 3)
    assert "napari-chromagan: [rank 1/2] 3 of 6 images are this process's share" in err
    assert f"napari-chromagan: [rank 1/2] colourised 3 images into {out} in " in err

    # now its own outputs exist: refused, naming only this rank's files
    code = main([*argv, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: [rank 1/2] 3 outputs already exist" in err and "img0_" not in err

    # an interrupted write leaves a hidden temporary file; --resume removes it, redoes nothing
    (out / "img5_colorized.png").unlink()
    (out / ".img5_colorized.png.0123456789ab.part").write_bytes(b"half")
    (out / ".img4_colorized.png.0123456789ab.part").write_bytes(b"rank 0's, live")
    before = _stats(out)
    code = main([*argv, "--device", "cpu", "--resume"])
    err = capsys.readouterr().err
    assert code == 0, err
    after = _stats(out)
    assert "[rank 1/2] removed 1 temporary file left by an interrupted run" in err
    assert "[rank 1/2] colourised 1 image into" in err and "(2 skipped: output exists)" in err
    assert not (out / ".img5_colorized.png.0123456789ab.part").exists()
    assert (out / ".img4_colorized.png.0123456789ab.part").exists()
    assert imageio.read_image(out / "img5_colorized.png").shape == (H, W, 3)
    for name in ("img0_colorized.png", "img1_colorized.png", "img3_colorized.png"):
        assert after[name] == before[name], name


def test_more_ranks_than_images(tmp_path, capsys, weights, monkeypatch):
    _images(tmp_path / "in", n=2)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    code = main(
        [
            "colorize",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[rank 3/4] 0 of 2 images are this process's share" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "inconsistent torchrun environment: RANK=2"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "$RANK must be a whole number"),
        ({"RANK": "0", "WORLD_SIZE": "2", "OUT_IN_INPUT": "1"}, "must not be inside an input"),
    ],
)
def test_torchrun_usage_errors(tmp_path, capsys, monkeypatch, env, message):
    _images(tmp_path / "in", n=2)
    out = tmp_path / "in" / "out" if env.pop("OUT_IN_INPUT", None) else tmp_path / "out"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["colorize", str(tmp_path / "in"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def _torchrun(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # carries the isolated NAPARI_CHROMAGAN_CACHE of the autouse fixture
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "napari_chromagan", "colorize", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_S)


def test_torchrun_two_processes_then_resume(tmp_path, weights):
    sources = _images(tmp_path / "in")
    out = tmp_path / "out"
    common = (tmp_path / "in", "-o", out, "--weights", weights, "--device", "cpu")
    proc = _torchrun(*common)
    assert proc.returncode == 0, proc.stderr
    names = [f"{p.stem}_colorized.png" for p in sources]
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left either
    for rank in (0, 1):  # each output written exactly once, by its own rank
        assert f"napari-chromagan: [rank {rank}/2] colourised 3 images into {out}" in proc.stderr
    for name in names:
        assert imageio.read_image(out / name).shape == (H, W, 3)

    gone = [names[1], names[4]]  # one of each rank's
    for name in gone:
        (out / name).unlink()
    before = _stats(out)
    proc = _torchrun(*common, "--resume")
    assert proc.returncode == 0, proc.stderr
    after = _stats(out)
    assert sorted(after) == names
    for name in names:
        if name in gone:
            assert imageio.read_image(out / name).shape == (H, W, 3)
        else:
            assert after[name] == before[name], name  # not written again
    for rank in (0, 1):
        assert f"[rank {rank}/2] colourised 1 image into {out}" in proc.stderr
        assert f"[rank {rank}/2] skipping 2 images whose output already exists" in proc.stderr
