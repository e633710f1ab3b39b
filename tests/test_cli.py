"""The mlmi-interp command line: output shapes, and one line on stderr for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_mlmi_interp.cli import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, main, scans
from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.io import LoadError, load

from .conftest import assert_same_world


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_mlmi_interp.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_info_json_on_real_series(shared_dicom, capsys):
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    assert main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    vols = out["volumes"]
    assert len(vols) == 2
    for v, echo_vol in zip(vols, load(folder), strict=True):
        assert v["shape"] == [35, 64, 64]
        assert v["spacing_mm"][0] == pytest.approx(2.34, abs=1e-4)
        assert np.allclose(v["index_to_lps"], echo_vol.index_to_lps, atol=1e-6)
        assert np.allclose(v["origin_lps_mm"], echo_vol.origin, atol=1e-5)
        assert np.array(v["direction"]).shape == (3, 3)
        assert v["modality"] == "MR" and isinstance(v["warnings"], list)
        assert "TEST" not in json.dumps(v)  # the series' PatientName never appears


def test_info_text(shared_dicom, capsys):
    assert main(["info", str(shared_dicom / "dicom2nifti" / "generic" / "compressed_j2k" / "001")]) == 0
    text = capsys.readouterr().out
    assert "index_to_lps" in text and "spacing mm" in text and "(4, 256, 256)" in text


def test_convert_writes_nifti_in_world_agreement(shared_dicom, tmp_path, capsys):
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    assert main(["convert", str(folder), str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 and all(p.endswith(".nii.gz") for p in printed)
    for echo, path in enumerate(sorted(printed), start=1):
        (vol,) = load(path)
        ref = shared_dicom / "dcm_qa_pdt2" / "Ref" / f"Siemens_pd+t2_tse_sag_ISO_1.8mm_3_e{echo}.nii"
        assert_same_world(vol, ref)  # WORLD_ATOL_MM (1e-4 mm), as docs/io.md says


def test_sample_json(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert set(paths) == {"scan", "mask"}
    assert load(paths["mask"])[0].array.max() == 1


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: (p / "x.dcm").write_text("not dicom") and p / "x.dcm", "not a DICOM file"),
        (lambda p: (p / "e.nii.gz").touch() or p / "e.nii.gz", "the file is empty"),
        (lambda p: p, "no DICOM images found"),
    ],
)
def test_bad_input_is_one_line_on_stderr_without_traceback(tmp_path, make, expected):
    target = make(tmp_path)
    for cmd in (["info", str(target)], ["convert", str(target), str(tmp_path / "out")]):
        proc = run_cli(*cmd)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("mlmi-interp: error: ") and expected in lines[0]
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = run_cli("--debug", "info", str(tmp_path / "missing"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_sample_shortcut_json(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--shortcut", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    (scan,) = load(paths["scan"])
    (mask,) = load(paths["mask"])
    assert mask.array.max() == 1 and scan.geometry.same_grid(mask.geometry)


def test_models_lists_the_zoo(capsys):
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"lesion-classifier", "lesion-protonet", "lesion-segmenter", "shortcut-classifier"} <= set(listed)
    assert listed["lesion-protonet"]["prototype"] is True
    assert listed["lesion-segmenter"]["task"] == "segmentation"


def _raising(exc: BaseException):
    def command(args):
        raise exc

    return command


@pytest.mark.parametrize(
    "exc",
    [
        InputError("--percent must be in (0, 100], got 0"),
        LoadError("the file is empty", path="scan.nii.gz"),
        PermissionError(13, "Permission denied", "out/scan.nii.gz"),
    ],
)
def test_a_user_error_is_one_line_with_status_2(monkeypatch, capsys, exc):
    monkeypatch.setattr(scans, "cmd_info", _raising(exc))
    assert main(["info", "anything"]) == EXIT_USER_ERROR == 2
    captured = capsys.readouterr()
    assert captured.err == f"mlmi-interp: error: {exc}\n"
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "exc", [ZeroDivisionError("division by zero"), KeyError("class_index"), ValueError("bad internal state")]
)
def test_a_bug_is_an_internal_error_to_report_not_a_user_error(monkeypatch, capsys, exc):
    monkeypatch.setattr(scans, "cmd_info", _raising(exc))
    assert main(["info", "anything"]) == EXIT_INTERNAL_ERROR == 70
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"mlmi-interp: internal error, please report: {type(exc).__name__}: {exc}"
    assert "--debug" in lines[1] and "issue tracker" in lines[1]
    assert len(lines) == 2 and "mlmi-interp: error:" not in lines[0]


def test_a_bug_under_debug_raises_itself(monkeypatch):
    monkeypatch.setattr(scans, "cmd_info", _raising(ZeroDivisionError("division by zero")))
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        main(["--debug", "info", "anything"])


def test_a_bug_shows_its_traceback_only_under_debug():
    code = (
        "import sys; from napari_mlmi_interp.cli import main, scans\n"
        "def bug(args): return {}['missing']\n"
        "scans.cmd_info = bug\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    plain = subprocess.run(
        [sys.executable, "-c", code, "info", "x"], capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 70
    assert "Traceback" not in plain.stderr
    assert "internal error, please report: KeyError: 'missing'" in plain.stderr
    debug = subprocess.run(
        [sys.executable, "-c", code, "--debug", "info", "x"], capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 1  # the interpreter's own status for an uncaught exception
    assert "Traceback" in debug.stderr and "KeyError: 'missing'" in debug.stderr
    assert "internal error" not in debug.stderr


def test_the_package_runs_as_a_module_and_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("info", "convert", "sample", "models", "predict", "methods", "explain", "evaluate"):
        assert f"    {command} " in proc.stdout
    for command in ("batch", "report", "ratings", "view", "demo"):
        assert f"    {command} " in proc.stdout
