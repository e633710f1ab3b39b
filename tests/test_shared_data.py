"""The real-data fixtures: in CI a missing ``shared/data`` fails the run; elsewhere it skips, saying
where the data is expected and how to point ``MLMI_SHARED_DATA`` at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: One real-data test (cheap: four small slices).
ONE_TEST = "tests/test_dicom_reference.py::test_non_isotropic_spacing_per_axis"


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "MLMI_SHARED_DATA")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_TEST, "-p", "no:cacheprovider", "-rfs", "-q"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_real_data_fails_in_ci(tmp_path, ci):
    missing = tmp_path / "nowhere"
    proc = _pytest(tmp_path, CI=ci, MLMI_SHARED_DATA=str(missing))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "1 error" in out or "1 failed" in out
    assert f"real test data not found at {missing / 'dicom'}" in out
    assert "set MLMI_SHARED_DATA" in out and "CI must run the real-data tests" in out


def test_missing_real_data_skips_outside_ci_naming_the_variable(tmp_path):
    missing = tmp_path / "nowhere"
    proc = _pytest(tmp_path, MLMI_SHARED_DATA=str(missing))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "1 skipped" in out
    assert f"real test data not found at {missing / 'dicom'}" in out
    assert "set MLMI_SHARED_DATA to the folder that holds dicom/" in out
    assert str(ROOT.parent / "shared" / "data") in out  # the default, spelled out


def test_mlmi_shared_data_points_the_fixtures_at_the_data(tmp_path, shared_dicom):
    """A copy of the data elsewhere, named by MLMI_SHARED_DATA: the real-data test runs and passes."""
    elsewhere = tmp_path / "data"
    (elsewhere / "dicom").mkdir(parents=True)
    (elsewhere / "dicom" / "dicom2nifti").symlink_to(shared_dicom / "dicom2nifti")
    proc = _pytest(tmp_path, CI="true", MLMI_SHARED_DATA=str(elsewhere))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "1 passed" in out, out[-2000:]
