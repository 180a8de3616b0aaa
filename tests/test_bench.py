from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_quick_run_writes_consistent_json(tmp_path):
    out = tmp_path / "engine.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_engine.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.read_text())
    assert result["checks"]["same_weights"] is True
    # the engine and the eager baseline compute the same colours
    assert result["checks"]["max_abs_ab_diff_engine_vs_baseline_lab"] < 0.05
    assert result["machine"]["torch"]
    ratios = [row["x vs eager bs1"] for row in result["rows"]]
    assert all(r > 0 for r in ratios) and ratios[0] == 1.0


def test_training_benchmark_quick_run_writes_consistent_json(tmp_path):
    out = tmp_path / "train.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_train.py"), "--quick", "--out", str(out), "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.read_text())
    baseline, default = result["rows"]
    assert baseline["x vs baseline"] == 1.0
    assert default["images/s"] > 0 and default["x vs baseline"] == baseline["s/step"] / default["s/step"]
    assert result["device"] == "cpu" and result["presets"] == {"tiny (w0.125, 64 px)": "chromagan-noclass"}
    (phases,) = result["breakdown_seconds_per_step"].values()
    timed = {k: v for k, v in phases.items() if k not in ("sum of phases", "untimed step")}
    assert {"batch to Lab", "generator forward", "generator backward", "critic backward"} <= set(timed)
    assert all(v > 0 for v in timed.values())
    assert phases["sum of phases"] == sum(timed.values())


def test_inference_benchmark_quick_run_writes_consistent_json(tmp_path):
    out = tmp_path / "inference.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_inference.py"), "--quick", "--device", "cpu", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.read_text())
    assert result["torch"] and result["machine"]["cpu_count"] and result["device"] == "cpu"
    assert result["settings"]["quick"] is True and result["settings"]["width"] == 0.25
    assert result["checks"]["same_weights"] is True
    assert result["checks"]["max_abs_ab_diff_engine_vs_baseline_lab"] < 0.05
    assert [row["batch"] for row in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert row["eager img/s"] > 0 and row["engine img/s"] > 0
        assert row["x vs eager"] > 0 and abs(row["x vs eager"] - row["engine img/s"] / row["eager img/s"]) < 1e-9
    assert set(result["breakdown"]) == {"image 1024x1024 u16", "stack 4x256x256 u8"}
    for case in result["breakdown"].values():
        # the engine's steps, called one by one, reproduce colorize's output exactly
        assert case["staged_matches_colorize"] is True
        assert case["staged_vs_colorize_max_diff"] == {"rgb": 0, "ab": 0.0, "exact_required": True}
        stages = case["breakdown_s"]
        assert set(stages) == {"normalise", "resize", "network", "full_resolution", "remainder"}
        assert all(stages[k] > 0 for k in ("normalise", "resize", "network", "full_resolution"))
        assert abs(sum(stages.values()) - case["colorize_s"]) < 1e-9
        assert case["memory"]["peak_rss_growth_mib"] > 0
    target = result["target"]
    assert target["ratio"] > 0 and target["required_at_most"] == 1.5
    assert target["passed"] == (target["ratio"] <= 1.5)
    assert target["ratio"] == target["colorize_s"] / (target["predict_1x224_s"] + target["full_resolution_s"])


def test_hints_benchmark_quick_run_writes_consistent_json(tmp_path):
    out = tmp_path / "hints.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hints.py"), "--quick", "--threads", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.read_text())
    assert result["date"] and result["machine"]["cpu_count"] and result["settings"]["quick"] is True
    rows = {row["case"]: row for row in result["rows"]}
    assert set(rows) == {
        "baseline: colorize 256^2",
        "preview 256^2, 1 point",
        "preview 256^2, 5 points",
        "  of which solve 256^2, 5 points",
        "baseline: colorize 512^2",
        "apply_color_hints 512^2, 5 points",
    }
    for row in rows.values():
        base = rows[f"baseline: colorize {row['side']}^2"]["median_s"]
        assert row["median_s"] > 0 and row["x baseline"] == row["median_s"] / base
    memory = result["memory"]
    assert memory["side"] == 512 and memory["peak_growth_mib"] > 0
    assert abs(memory["outputs_mib"] - 512 * 512 * (2 * 4 + 3) / 2**20) < 1e-9
    # the targets are for 1024^2 and 4096^2: a quick run measures neither
    assert result["targets"]["values"] == {"preview_1024_s": None, "image_4096_s": None, "memory_4096_gib": None}


def _has_commit(ref: str) -> bool:
    proc = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}^{{commit}}"], capture_output=True)
    return proc.returncode == 0


def test_cli_benchmark_runs_the_old_cli_beside_the_pipeline_and_compares_pixels(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_cli import BASELINE_REF

    if not _has_commit(BASELINE_REF):
        pytest.skip(f"the baseline commit {BASELINE_REF} is not in this checkout's history")
    out = tmp_path / "cli.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_cli.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )
    result = json.loads(out.read_text())
    assert result["machine"]["cpu_count"] and result["settings"]["baseline_ref"] == BASELINE_REF
    cases = [row["case"] for row in result["rows"]]
    assert cases == [f"baseline CLI ({BASELINE_REF})", "pipeline (--batch-size 8)", "pipeline --batch-size 1"]
    assert all(row["median s"] > 0 for row in result["rows"])
    pixels = result["pixels_vs_baseline"]
    # one file per network call: every pixel of every file as the old CLI wrote it
    single = pixels["pipeline --batch-size 1"]
    assert single["files"] == 12 and single["values"] > 0 and single["identical"] is True
    # packed: the network's last bits differ with the batch, never by more than one level
    packed = pixels["pipeline (--batch-size 8)"]
    assert packed["files"] == 12 and packed["max_abs_diff"] <= 1
    assert packed["values_differing"] <= 1e-3 * packed["values"]
