"""The training command as separate processes: Ctrl-C writes a checkpoint and exits 130, and
torchrun with two gloo processes trains as one run (rank 0 alone writes). Tiny model, generated
images, CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tiny_runs
import torch
from conftest import HANG_S
from tiny_runs import noclass_train_args, read_metrics

from napari_chromagan.weights.checkpoint import load_checkpoint
from training.train import checkpoint_files

ROOT = Path(__file__).resolve().parents[2]

images = tiny_runs.images  # the fixture, by name


def _checkout_path() -> str:
    """PYTHONPATH for a child process that runs this checkout's training and plugin code (not
    whatever napari_chromagan the environment has installed), as the CLI tests do."""
    return os.pathsep.join(
        filter(None, [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH")])
    )


def test_sigint_writes_a_checkpoint_and_exits_cleanly(images, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": _checkout_path()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *noclass_train_args(images, out, 100000)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline and not (
        metrics.is_file() and metrics.read_text().count("\n") >= 2
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, err
    assert "--resume latest" in err
    (ckpt,) = checkpoint_files(out)
    step = load_checkpoint(ckpt).training["step"]
    assert step >= 2 and ckpt.name == f"step-{step:08d}.pt"
    assert read_metrics(out)[-1]["step"] == step


def test_torchrun_gloo_two_processes(images, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": _checkout_path(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "training",
            # with the schedule's extras, which must stay in step on every process
            *noclass_train_args(
                images, out, 3, "--checkpoint-every", "2", "--ema-decay", "0.5", "--lr-warmup", "2"
            ),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3]  # one writer: rank 0
    assert [p.name for p in checkpoint_files(out)] == ["step-00000002.pt", "step-00000003.pt"]
    ckpt = load_checkpoint(checkpoint_files(out)[-1])
    assert ckpt.training["world_size"] == 2 and len(ckpt.training["rng_epsilon"]) == 2
    assert ckpt.metadata["batch_size"] == 4  # 2 per process x 2 processes
    assert ckpt.training["ema_updates"] == 3 and ckpt.metadata["ema_decay"] == 0.5
    average, trained = ckpt.generator.state_dict(), ckpt.training["generator_trained"]
    assert any(not torch.equal(average[k], trained[k]) for k in trained)
    # only rank 0 wrote: no stray temporary files, one metrics file
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.json",
        "metrics.jsonl",
        "progress.json",
    ]
