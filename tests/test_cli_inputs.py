"""The command line on misread inputs, progress bars and warnings (issue 13, items 9-11).

Each misread input is one clear line on stderr and exit status 2; progress bars appear on a
terminal only; load, prediction and explanation warnings are ``warning: ...`` lines on stderr,
each said once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.explain import explain
from napari_mlmi_interp.io import Geometry, Volume, load, save
from napari_mlmi_interp.models import resolve_model

from .dicom_factory import axial_positions, write_series

GRID = Geometry((12, 14, 16), (2.0, 1.5, 1.0), (-8.0, -10.0, 4.0))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("sample")
    assert main(["sample", str(out), "--json"]) == 0
    return {
        "scan": str(out / "sample_brain_t1.nii.gz"),
        "mask": str(out / "sample_brain_lesion_mask.nii.gz"),
    }


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlmi-interp: error: ")
    return err[0]


# -- misread inputs ------------------------------------------------------------------------------


def test_intensity_image_as_roi_is_refused_and_threshold_makes_it_a_region(tmp_path, capsys):
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 100.0, GRID.shape).astype(np.float32)
    heat = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    map_path = save(Volume(heat, GRID), tmp_path / "map.nii.gz")
    image_path = save(Volume(image, GRID), tmp_path / "image.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(image_path)]) == 2
    line = _error(capsys)
    assert "must be a binary mask" in line and "--roi-threshold" in line and "image.nii.gz" in line
    # the image > 60 as the region: relevance mass = map inside / map total, computed here
    assert main(["evaluate", str(map_path), "--roi", str(image_path), "--roi-threshold", "60", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    inside = image > 60
    assert figures["relevance_mass_accuracy"] == pytest.approx(heat[inside].sum() / heat.sum(), abs=1e-5)
    # a binary mask stored as 0/255 is a mask, not an image
    mask = np.zeros(GRID.shape, np.uint8)
    mask[4:8, 5:9, 6:10] = 255
    mask_path = save(Volume(mask, GRID), tmp_path / "mask.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(mask_path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["relevance_mass_accuracy"] == pytest.approx(heat[mask > 0].sum() / heat.sum(), abs=1e-5)
    assert main(["evaluate", str(map_path), "--roi-threshold", "1"]) == 2
    assert "--roi-threshold must come with --roi" in _error(capsys)


def test_roi_with_a_classifier_points_to_region_for_occlusion(sample, tmp_path, capsys):
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--roi", sample["mask"]]
    assert main([*args, "--method", "occlusion", "--out", str(tmp_path)]) == 2
    line = _error(capsys)
    assert "--roi must be used with a segmentation model" in line and "--region MASK" in line
    assert main([*args, "--method", "saliency", "--out", str(tmp_path)]) == 2
    assert "classification model 'lesion-classifier'" in _error(capsys)
    assert not list(tmp_path.iterdir())  # nothing written


def test_segmentation_target_and_roi_together_explain_that_class_in_that_mask(sample, tmp_path, capsys):
    base = ["explain", sample["scan"], "--model", "lesion-segmenter", "--method", "saliency"]
    base += ["--roi", sample["mask"], "--json"]
    assert main([*base, "--target", "lesion", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "explaining class" not in captured.err  # the user named it
    out = json.loads(captured.out)
    provenance = json.loads(Path(out["provenance"]).read_text())
    assert provenance["target"]["name"] == "lesion" and provenance["target"]["roi"] == "given mask"
    (scan,) = load(sample["scan"])
    (mask,) = load(sample["mask"])
    expected = explain(scan, resolve_model("lesion-segmenter"), "saliency", target="lesion", roi=mask.array)
    (written,) = load(out["map"])
    np.testing.assert_allclose(written.array, expected.native.array, rtol=1e-5, atol=1e-7)
    # --roi alone: the class used is said
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "no --target: explaining class 'lesion' (index 1) inside the given mask" in err


def test_non_binary_roi_for_segmentation_is_refused(sample, tmp_path, capsys):
    args = ["explain", sample["scan"], "--model", "lesion-segmenter", "--method", "saliency"]
    assert main([*args, "--roi", sample["scan"], "--out", str(tmp_path)]) == 2
    assert "must be a binary mask" in _error(capsys)


@pytest.mark.parametrize(
    ("method", "param", "expected"),
    [
        ("integrated_gradients", "n_steps=abc", "--param n_steps (integrated_gradients) must be an integer"),
        ("integrated_gradients", "n_steps=2.5", "must be an integer (default 32), got 2.5"),
        ("smoothgrad", "stdevs=wide", '--param stdevs (smoothgrad) must be a number (default 0.15), got "wi'),
        ("saliency", "abs=yes", "--param abs (saliency) must be true or false"),
        ("occlusion", "perturbations_per_eval=lots", "must be a positive integer or 'auto'"),
    ],
)
def test_bad_param_names_the_parameter_and_its_type(sample, tmp_path, capsys, method, param, expected):
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--method", method]
    assert main([*args, "--param", param, "--out", str(tmp_path)]) == 2
    assert expected in _error(capsys)


def test_existing_file_as_out_folder_is_a_clear_error(sample, tmp_path, capsys):
    taken = tmp_path / "results"
    taken.write_text("a file")
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--method", "saliency"]
    assert main([*args, "--out", str(taken)]) == 2
    line = _error(capsys)
    assert f"--out must be a folder, got the existing file {taken}" in line and "Errno" not in line
    assert main(["convert", sample["scan"], str(taken)]) == 2
    assert "OUT_DIR must be a folder" in _error(capsys)
    batch = ["batch", sample["scan"], "--model", "lesion-classifier", "--method", "saliency"]
    assert main([*batch, "--out", str(taken), "--workers", "0"]) == 2
    assert "--out must be a folder" in _error(capsys)


def test_closed_pipe_ends_quietly():
    # the reader goes away before anything is written (`mlmi-interp methods --json | head -c0`)
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_mlmi_interp.cli", "methods", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""


def test_broken_pipe_inside_a_command_returns_zero(monkeypatch, capsys):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("no file")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["methods"]) == 0
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


# -- progress bars -------------------------------------------------------------------------------


def _tty(monkeypatch, on: bool) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: on, raising=False)


@pytest.mark.parametrize(
    ("tty", "quiet", "bar"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_progress_bar_only_on_a_terminal_and_not_when_quiet(
    sample, tmp_path, capsys, monkeypatch, tty, quiet, bar
):
    _tty(monkeypatch, tty)
    flags = ["--quiet"] if quiet else []
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--method", "integrated_gradients"]
    assert main([*args, "--param", "n_steps=4", "--out", str(tmp_path / "e"), *flags]) == 0
    err = capsys.readouterr().err
    # the bar ends at its total: "100%|...| N/N"
    assert ("100%|" in err and "integrated_gradients" in err) is bar
    assert main(["predict", sample["scan"], "--model", "lesion-classifier", *flags]) == 0
    err = capsys.readouterr().err
    assert ("100%|" in err and "1/1" in err) is bar
    folder = tmp_path / "cohort"
    folder.mkdir()
    save(load(sample["scan"])[0], folder / "a.nii.gz")
    batch = ["batch", str(folder), "--model", "lesion-classifier", "--method", "saliency", "--workers", "0"]
    assert main([*batch, "--out", str(tmp_path / "b"), *flags]) == 0
    err = capsys.readouterr().err
    assert ("100%|" in err and "1/1" in err) is bar
    if not bar:
        assert "%|" not in err


# -- warnings ------------------------------------------------------------------------------------


def test_explanation_warnings_are_printed_on_stderr(sample, tmp_path, capsys):
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--method", "integrated_gradients"]
    assert main([*args, "--param", "n_steps=2", "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    provenance = json.loads(Path(json.loads(captured.out)["provenance"]).read_text())
    assert provenance["warnings"]  # 2 steps of a path integral do not converge
    for w in provenance["warnings"]:
        assert captured.err.count(f"warning: {w}") == 1


def test_prediction_warnings_are_printed_on_stderr(sample, capsys, monkeypatch):
    from napari_mlmi_interp import models

    real = models.predict

    def predict_with_warning(volume, model, **kw):
        pred = real(volume, model, **kw)
        pred.warnings = ["the input is far from the model's domain"]
        return pred

    monkeypatch.setattr(models, "predict", predict_with_warning)
    assert main(["predict", sample["scan"], "--model", "lesion-classifier"]) == 0
    assert capsys.readouterr().err.count("warning: the input is far from the model's domain") == 1


def _irregular_folder(root: Path) -> Path:
    """A tilted CT, a series with 4 slices at every position, a series in two orientations, a note."""
    study = "1.2.826.0.1.3680043.8.498.900"
    step, tilt = 2.5, np.radians(14.0)
    tilted = axial_positions(5, spacing=step, shift=(0.0, step * np.tan(tilt)))
    write_series(
        root / "ct", tilted, modality="CT", description="HEAD TILT", series_number=3, study_uid=study
    )
    uid = "1.2.826.0.1.3680043.8.498.901"
    for k in range(4):
        write_series(
            root / "cine", axial_positions(3), series_uid=uid, acquisition=k + 1, prefix=f"t{k}",
            description="T1_MPRAGE", series_number=4, study_uid=study,
        )  # fmt: skip
    uid = "1.2.826.0.1.3680043.8.498.902"
    write_series(root / "loc", axial_positions(3), series_uid=uid, prefix="ax", description="loc",
                 series_number=6, study_uid=study)  # fmt: skip
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    write_series(root / "loc", [(0, y, 0) for y in (0.0, 3.0, 6.0)], series_uid=uid, prefix="co",
                 orientation=coronal, description="loc", series_number=6, study_uid=study)  # fmt: skip
    (root / "README.txt").write_text("not an image")
    return root


def test_convert_says_each_load_warning_once_and_names_files_by_series(tmp_path, capsys):
    source = _irregular_folder(tmp_path / "in")
    assert main(["convert", str(source), str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    written = sorted(Path(p).name for p in captured.out.split())
    assert written == [
        "3_HEAD_TILT.nii.gz",
        "4_T1_MPRAGE_repeat_1_of_4.nii.gz",
        "4_T1_MPRAGE_repeat_2_of_4.nii.gz",
        "4_T1_MPRAGE_repeat_3_of_4.nii.gz",
        "4_T1_MPRAGE_repeat_4_of_4.nii.gz",
        "6_loc_orientation_1.nii.gz",
        "6_loc_orientation_2.nii.gz",
    ]
    err = captured.err.splitlines()
    assert all(line.startswith("warning: ") for line in err)
    assert len(err) == len(set(err)) == 4

    def one(*words: str) -> str:
        (line,) = [e for e in err if all(w in e for w in words)]
        return line

    assert one("series 3 'HEAD TILT'", "gantry tilt of 14.00 degrees", "resampling")
    assert one("series 4 'T1_MPRAGE'", "4 slices at every position: split into 4 volumes")
    assert one("series 6 'loc'", "2 slice orientations: split into 2 volumes")
    assert one("1 non-DICOM file skipped")


def test_batch_prints_load_warnings_once_per_case(tmp_path, capsys):
    root = tmp_path / "cohort"
    step = 2.5
    tilted = axial_positions(6, spacing=step, shift=(0.0, step * np.tan(np.radians(14.0))))
    write_series(root / "a", tilted, rows=24, cols=24, modality="CT", description="tilted", series_number=2)
    batch = ["batch", str(root), "--model", "lesion-classifier", "--method", "saliency", "--workers", "0"]
    assert main([*batch, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("gantry tilt of 14.00 degrees") == 1
    assert "warning: case-" in err and "series 2 'tilted'" in err


def test_device_flag_runs_on_the_cpu_and_refuses_a_gpu_the_machine_lacks(sample, tmp_path, capsys):
    import torch

    args = [
        "explain",
        sample["scan"],
        "--model",
        "lesion-classifier",
        "--method",
        "saliency",
        "--target",
        "1",
    ]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu"), "--json", "--quiet"]) == 0
    sidecars = list((tmp_path / "cpu").glob("*.json"))
    assert sidecars and any('"device": "cpu"' in p.read_text() for p in sidecars)
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
        assert "no CUDA GPU" in _error(capsys)
    assert main([*args, "--device", "tpu", "--out", str(tmp_path / "tpu")]) == 2
    assert "device must be one of auto" in _error(capsys)
