"""The benchmark script runs end to end (tiny volumes) and reports every comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_quick_run_writes_the_report(tmp_path):
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for method in ("Grad-CAM", "SmoothGrad", "Integrated Gradients", "Occlusion"):
        assert f"| {method} |" in text
    data = json.loads(out.with_suffix(".json").read_text())
    rows = data["rows"]
    assert all(r["plugin_s"] > 0 and r["captum_s"] > 0 and r["floor_s"] > 0 for r in rows)
    assert any(r.get("monai_s") for r in rows if r["method"] == "Grad-CAM")
    budget = data["config"]["budget_mb"]
    memory = {m["what"]: m for m in data["memory"] if m["budget_mb"] == budget}
    assert memory["plugin_ig"]["peak_mb"] is not None and memory["plugin_ig"]["peak_mb"] > 0
    assert memory["plugin_ig"]["internal_batch_size"] >= 1
    # under a budget below one sample the plugin refuses before running, and says why
    (tiny,) = [m for m in data["memory"] if m["budget_mb"] != budget]
    assert "per sample" in tiny["refused"] and "memory budget" in tiny["refused"]
    # every Grad-CAM, IG and occlusion row has its target, plus the three memory targets
    compared = [r for r in rows if r["method"] in ("Grad-CAM", "Integrated Gradients", "Occlusion")]
    assert len(data["targets"]) == len(compared) + 3
    assert all(isinstance(t["met"], bool) for t in data["targets"])
