from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert result["device"] == "cpu" and result["preset"] == "chromagan-noclass"
