"""Batches over a cohort on Dask: equal to single-process runs, resumable, one bad case
does not stop the others, outputs in each case's own geometry."""

from __future__ import annotations

import json
import sys

import dask.distributed  # noqa: F401 - a hard dependency: a broken install fails, not skips
import numpy as np
import pytest
import torch  # noqa: F401 - a hard dependency: a broken install fails, not skips

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.io import load, save

METHODS = ["gradcam", "saliency"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Five generated subjects (NIfTI) with lesion masks, an oblique one, and a corrupt file."""
    from napari_mlmi_interp.io.volume import Geometry
    from napari_mlmi_interp.synthetic import make_subject, template_grid

    root = tmp_path_factory.mktemp("cohort")
    scans, masks = root / "scans", root / "masks"
    scans.mkdir()
    masks.mkdir()
    for i, seed in enumerate([11, 12, 13, 14, 15]):
        grid = None
        if i == 4:  # one case on an oblique, anisotropic grid: outputs must follow it
            t = template_grid()
            c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
            rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ t.direction
            shape, spacing = np.array([62, 88, 84]), np.array([3.0, 2.5, 2.2])  # the template's field
            centre = t.to_lps((np.array(t.shape) - 1) / 2)
            origin = centre - rotation @ (spacing * (shape - 1) / 2)
            grid = Geometry(tuple(shape), tuple(spacing), tuple(origin), rotation)
        subject = make_subject(seed, n_lesions=1, grid=grid)
        save(subject.scan, scans / f"subject{i}.nii.gz")
        save(subject.mask, masks / f"subject{i}_mask.nii.gz")
    (scans / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip, not really nifti")
    return root


def test_batch_on_two_workers_equals_single_process_runs(cohort, tmp_path):
    from napari_mlmi_interp.cohort import run_batch
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model

    out = tmp_path / "out"
    seen = []
    result = run_batch(
        cohort / "scans",
        model="lesion-classifier",
        methods=METHODS,
        out=out,
        masks=cohort / "masks",
        workers=2,
        target="lesion",
        progress=lambda done, total, rec: seen.append((done, total)),
    )
    assert result.workers == 2
    assert [d for d, _t in seen] == list(range(1, 7)) and {t for _d, t in seen} == {6}
    ok = [r for r in result.records if r["status"] == "ok"]
    assert len(ok) == 5 and len(result.failed) == 1
    (bad,) = result.failed
    assert bad["input"].endswith("broken.nii.gz") and "broken.nii.gz" in bad["error"]
    assert len({r["worker_pid"] for r in ok}) == 2  # both workers did work
    model = resolve_model("lesion-classifier")
    for r in ok:
        (scan,) = load(r["input"])
        for method in METHODS:
            (mapped,) = load(r["methods"][method]["map"])
            # in the case's own geometry, voxel for voxel
            assert mapped.shape == scan.shape
            np.testing.assert_allclose(mapped.index_to_lps, scan.index_to_lps, atol=1e-4)
            # the same map as a single-process run (one torch thread there, too)
            expected = explain(scan, model, method, target="lesion").native.array
            np.testing.assert_allclose(mapped.array, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
            sidecar = json.loads((out / "cases" / r["case"] / f"{method}.json").read_text())
            assert sidecar["tool"]["name"] == "napari-mlmi-interp"
            assert sidecar["provenance"]["model"]["sha256"] == model.sha256
            assert sidecar["method"] == method and sidecar["target"]["name"] == "lesion"
            assert "localization" in sidecar["metrics"] and "timings_s" in sidecar
        # masks were matched by name: localization figures against the lesion
        assert r["methods"]["gradcam"]["figures"]["pointing_game"] is not None
    import pandas as pd

    summary = pd.read_csv(result.summary_csv)
    assert len(summary) == 5 * len(METHODS) + 1
    assert set(summary["status"]) == {"ok", "error"}
    assert result.summary_parquet is not None and len(pd.read_parquet(result.summary_parquet)) == len(summary)

    # rerun: the five finished cases are skipped (not run again), the broken one is retried
    again = run_batch(
        cohort / "scans",
        model="lesion-classifier",
        methods=METHODS,
        out=out,
        masks=cohort / "masks",
        workers=0,
        target="lesion",
    )
    assert sorted(again.skipped) == sorted(r["case"] for r in ok)
    assert len(again.failed) == 1
    assert [r["methods"] for r in again.records if r["status"] == "ok"] == [r["methods"] for r in ok]


def test_batch_command_reports_progress_and_failures(cohort, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a bar on a terminal only
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "scan,roi,label\n"
        f"{cohort / 'scans' / 'subject0.nii.gz'},{cohort / 'masks' / 'subject0_mask.nii.gz'},1\n"
        f"{cohort / 'scans' / 'broken.nii.gz'},,0\n"
    )
    args = ["batch", str(manifest), "--model", "lesion-classifier", "--method", "saliency"]
    args += ["--out", str(tmp_path / "out"), "--workers", "0"]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1  # one case failed
    assert "2/2 [" in captured.err and "1 failed" in captured.err
    assert (
        "1 of 2 cases done" in captured.out and "failed:" in captured.out and "broken.nii.gz" in captured.out
    )
    code = main([*args, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["skipped"] == 1 and summary["done"] == 1 and len(summary["failed"]) == 1
    assert (
        main(
            [
                "batch",
                str(manifest),
                "--model",
                "no-such-model",
                "--method",
                "saliency",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert "no-such-model" in capsys.readouterr().err


def test_manifest_errors_are_clear(tmp_path):
    from napari_mlmi_interp.cohort import read_cases

    bad = tmp_path / "m.csv"
    bad.write_text("path\nx.nii.gz\n")
    with pytest.raises(ValueError, match="needs a 'scan' column"):
        read_cases(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no scans found"):
        read_cases(tmp_path / "empty")
    # case folders are keyed by a hash of the path: no file name (maybe a patient's) in them
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "DOE_JANE.nii.gz").write_bytes(b"")
    (case,) = read_cases(tmp_path / "scans")
    assert case.key.startswith("case-") and "DOE" not in case.key


def test_key_slices_follow_radiological_convention():
    """A blob at the patient's left, anterior and superior lands on the viewer's right, top,
    top: whatever the scan's array order (here an LPS-flipped, axis-swapped grid)."""
    from PIL import Image

    from napari_mlmi_interp.cohort.report import key_slices
    from napari_mlmi_interp.io.volume import Geometry, Volume

    # array axes: 0 -> -P (anterior), 1 -> +S, 2 -> -L (right): nothing like (S, P, L)
    direction = np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]], dtype=float)
    geometry = Geometry((40, 40, 40), (2.0, 2.0, 2.0), (30.0, 30.0, -30.0), direction)
    scan = Volume(np.random.default_rng(0).normal(100, 5, (40, 40, 40)).astype(np.float32), geometry)
    blob = np.zeros((40, 40, 40), np.float32)
    lps = np.array([20.0, -20.0, 20.0])  # left, anterior, superior of the field's centre
    idx = np.indices(blob.shape).reshape(3, -1).T
    d = np.linalg.norm(geometry.to_lps(idx) - lps, axis=1).reshape(blob.shape)
    blob[:] = np.exp(-((d / 6.0) ** 2))
    strip = np.asarray(Image.open(__import__("io").BytesIO(key_slices(scan, scan.with_array(blob))))).astype(
        int
    )
    red = strip[..., 0] - strip[..., 2] > 60  # the heat overlay (red to yellow), not the grey anatomy
    width = strip.shape[1]
    third = (width - 12) // 3
    axial, coronal = red[:, :third], red[:, third + 6 : 2 * third + 6]
    ys, xs = np.nonzero(axial)
    assert (
        xs.mean() > third / 2 and ys.mean() < strip.shape[0] / 2
    )  # patient's left on the right; anterior up
    ys, xs = np.nonzero(coronal)
    assert xs.mean() > third / 2 and ys.mean() < strip.shape[0] / 2  # left on the right; superior up


def test_report_shows_cases_by_pseudonym_only(cohort, tmp_path):
    import base64
    import re

    from napari_mlmi_interp.cohort import run_batch, write_report
    from napari_mlmi_interp.store import StudyStore

    out = tmp_path / "out"
    result = run_batch(
        cohort / "scans",
        model="lesion-classifier",
        methods=["gradcam"],
        out=out,
        masks=cohort / "masks",
        workers=0,
        target="lesion",
    )
    ok = [r for r in result.records if r["status"] == "ok"]
    with StudyStore(tmp_path / "study.sqlite", reader="dr-a") as store:
        run = store.add_run(
            ok[0]["case_id"], model="lesion-classifier", model_sha256="x", method="gradcam", target="lesion"
        )
        store.rate(run, "localization", 4, "on the lesion")
    path = write_report(out, tmp_path / "report.html", study=tmp_path / "study.sqlite", max_cases=2)
    text = path.read_text()
    assert all(r["case_id"] in text for r in ok)  # every case in the table
    assert "subject0" not in text and str(cohort) not in text and "broken" not in text  # no names, no paths
    assert "failed (LoadError)" in text and "on the lesion" in text and "Model card" in text
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(images) == 2  # two cases in detail, one method each
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not a batch result folder"):
        write_report(tmp_path, tmp_path / "x.html")


def test_batch_uses_a_running_scheduler(cohort, tmp_path):
    from dask.distributed import LocalCluster

    from napari_mlmi_interp.cohort import run_batch

    manifest = tmp_path / "one.csv"
    manifest.write_text(f"scan\n{cohort / 'scans' / 'subject1.nii.gz'}\n")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_batch(
            manifest,
            model="lesion-classifier",
            methods=["saliency"],
            out=tmp_path / "out",
            scheduler=cluster.scheduler_address,
        )
    (record,) = result.records
    assert record["status"] == "ok" and result.workers == 1
    assert record["worker_pid"] != __import__("os").getpid()  # it ran on the scheduler's worker
