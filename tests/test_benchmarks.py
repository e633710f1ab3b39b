"""The benchmark script runs end to end (tiny volumes) and reports every comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_run(script: str, out: Path) -> None:
    """``benchmarks/<script> --quick --out <out>``, which must succeed."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_benchmark_quick_run_writes_the_report(tmp_path):
    out = tmp_path / "benchmarks.md"
    _quick_run("run.py", out)
    text = out.read_text()
    for method in (
        "Grad-CAM",
        "SmoothGrad",
        "Integrated Gradients",
        "Occlusion",
        "Occlusion, coarse-to-fine",
    ):
        assert f"| {method} |" in text
    # the exact occlusion equals Captum's; coarse-to-fine says how far it is from it
    for r in [
        r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if "Occlusion" in r["method"]
    ]:
        if r["method"] == "Occlusion":
            assert r["max_diff_rel_range"] < 1e-4
        else:
            assert set(r["fidelity"]) == {"spearman", "dice_top", "percent"}
    # the sections of occlusion.py and gradients.py, run again
    assert (
        "# Exact incremental occlusion" in text
        and "# Gradient methods: the plugin against bare Captum" in text
    )
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


@pytest.mark.slow
def test_occlusion_benchmark_quick_run_matches_captum(tmp_path):
    """benchmarks/occlusion.py end to end on tiny volumes: every row's map equals Captum's."""
    out = tmp_path / "occ.json"
    _quick_run("occlusion.py", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["demo", "resnet18"]
    assert all(r["strategy_run"] == "incremental" and r["max_diff_rel_range"] < 1e-4 for r in rows)
    assert all(r["plugin_incremental_s"] > 0 and r["captum_full_s"] > 0 and r["monai_s"] > 0 for r in rows)
    page = out.with_suffix(".md").read_text()
    assert "| resnet18 | 32³, central 24³ | 8, 8 | 27 |" in page


def test_the_coarse_to_fine_note_quotes_the_measured_fidelity():
    """The line a reader sees with a coarse-to-fine map is the benchmark's measurement, not a guess."""
    from napari_mlmi_interp.explain.methods.occlusion import COARSE_TO_FINE_FIDELITY, coarse_to_fine_note

    rows = json.loads((ROOT / "docs" / "benchmarks.json").read_text())["rows"]
    measured = {
        (r["model"], r["size"]): r["fidelity"] for r in rows if r["method"] == "Occlusion, coarse-to-fine"
    }
    assert {(q["model"], q["size"]) for q in COARSE_TO_FINE_FIDELITY} == set(measured)  # every one quoted
    for quoted in COARSE_TO_FINE_FIDELITY:
        got = measured[quoted["model"], quoted["size"]]
        assert got["percent"] == quoted["percent"]
        assert abs(got["spearman"] - quoted["spearman"]) < 5e-3
        assert abs(got["dice_top"] - quoted["dice_top"]) < 5e-3
        assert f"Spearman ρ {got['spearman']:.2f}" in coarse_to_fine_note()
    assert all(q["spearman"] < 1 for q in COARSE_TO_FINE_FIDELITY)  # an approximation, measured as one


@pytest.mark.slow
def test_gradient_benchmark_quick_run_matches_captum(tmp_path):
    """benchmarks/gradients.py end to end on 32³: every row's map equals bare Captum's."""
    out = tmp_path / "grad.json"
    _quick_run("gradients.py", out)
    rows = json.loads(out.read_text())["rows"]
    assert {(r["model"], r["method"]) for r in rows} == {
        (m, g)
        for m in ("resnet18", "densenet121")
        for g in ("saliency", "integrated_gradients", "smoothgrad")
    }
    assert all(r["max_rel_diff"] < 1e-3 and r["plugin_s"] > 0 and r["captum_s"] > 0 for r in rows)
    assert all(r["tuning"] == "input_gradient_copy" for r in rows)  # both stems qualify (1 channel in)
    assert "| resnet18 | 32³ | saliency |" in out.with_suffix(".md").read_text()
