"""The study file: ratings survive a SIGKILL, concurrent writers, schema upgrades; no PHI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.io import load
from napari_mlmi_interp.io.volume import Geometry
from napari_mlmi_interp.store import SCHEMA_VERSION, StoreError, StudyStore

from .dicom_factory import PHI, axial_positions, write_series

GEOMETRY = Geometry((3, 4, 5), (3.0, 1.0, 0.5), (1.0, 2.0, 3.0))


def new_run(store: StudyStore, case: str = "case-0123456789abcdef") -> int:
    return store.add_run(
        case, model="m", model_sha256="abc", method="gradcam", target="lesion", params={"k": 1}
    )


def test_ratings_actions_annotations_round_trip(tmp_path):
    with StudyStore(tmp_path / "s.sqlite", reader="ana") as store:
        assert store.version == SCHEMA_VERSION
        run = new_run(store)
        assert new_run(store) == run  # the same (case, model, method, target, params): the same run
        store.rate(run, "localization", 2, "edge of the lesion")
        store.rate(run, "localization", 4, "on the lesion")  # changed her mind: the latest counts
        store.rate(run, "actionability", None, "not applicable here")
        store.set_action(run, "refer")
        mask = np.zeros(GEOMETRY.shape, bool)
        mask[1, 2, 3] = mask[2, 3, 4] = True
        store.save_annotation("case-0123456789abcdef", mask, GEOMETRY)
        assert store.ratings(run) == {
            "localization": {
                "rating": 4,
                "note": "on the lesion",
                "created_at": pytest.approx(time.time(), abs=60),
            },
            "actionability": {
                "rating": None,
                "note": "not applicable here",
                "created_at": pytest.approx(time.time(), abs=60),
            },
        }
        assert store.ratings(run, reader="ben") == {}
        assert store.action(run)["action"] == "refer"
        saved, geometry = store.annotation("case-0123456789abcdef")
        assert np.array_equal(saved, mask) and geometry["spacing"] == [3.0, 1.0, 0.5]
        with pytest.raises(StoreError, match="1-5 or None"):
            store.rate(run, "localization", 7)
        with pytest.raises(StoreError, match="element must be one of"):
            store.rate(run, "beauty", 3)
        with pytest.raises(StoreError, match="action must be one of"):
            store.set_action(run, "shrug")
        with pytest.raises(StoreError, match="pseudonym"):
            store.add_case("Doe^Jane")
        history = store.to_dict()["runs"][0]["ratings"]
        assert [r["rating"] for r in history] == [2, 4, None]


def test_exports_by_command(tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    with StudyStore(db, reader="ana") as store:
        run = new_run(store)
        store.rate(run, "localization", 5, 'says "yes", twice')
        store.rate(run, "model_transparency", None)
        store.set_action(run, "flag_shortcut")
    assert (
        main(
            [
                "ratings",
                "export",
                str(db),
                "--csv",
                str(tmp_path / "r.csv"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    import csv

    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["element"], r["rating"]) for r in rows] == [
        ("localization", "5"),
        ("model_transparency", "NA"),
        ("action", "flag_shortcut"),
    ]
    assert rows[0]["note"] == 'says "yes", twice' and rows[0]["case"] == "case-0123456789abcdef"
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and len(data["current"]) == 3
    assert data["runs"][0]["actions"][0]["action"] == "flag_shortcut"
    assert main(["ratings", "export", str(tmp_path / "nope.sqlite"), "--csv", "x.csv"]) == 2
    assert "no such study file" in capsys.readouterr().err


def test_an_old_file_is_migrated_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.sqlite"
    with StudyStore(db, upgrade_to=1) as old:
        assert old.version == 1
        old._write("INSERT INTO cases VALUES ('case-aaaa', 'MR', 0)")
        old._write(
            "INSERT INTO runs (case_id, model, model_sha256, method, target, created_at) "
            "VALUES ('case-aaaa', 'm', 'h', 'saliency', 'lesion', 0)"
        )
        old._write(
            "INSERT INTO ratings (run_id, reader, element, rating, created_at) "
            "VALUES (1, 'ana', 'localization', 3, 0)"
        )
    with StudyStore(db, reader="ana") as store:
        assert store.version == SCHEMA_VERSION
        assert store.ratings(1)["localization"]["rating"] == 3
        assert store.run_info(1)["blinded_label"] is None  # the column added by migration 2
        store.mark_done("pilot", "c1-k1", run_id=1)
        assert store.done_items("pilot") == {"c1-k1"}


def test_unusable_files_are_refused_with_a_reason(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite: not a usable study file"):
        StudyStore(junk)
    newer = tmp_path / "newer.sqlite"
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError, match="newer version"):
        StudyStore(newer)


WRITER = textwrap.dedent(
    """
    import sys
    from napari_mlmi_interp.store import StudyStore
    store = StudyStore(sys.argv[1], reader=sys.argv[2])
    run = store.add_run("case-0123456789abcdef", model="m", model_sha256="abc", method="gradcam",
                        target="lesion", params={"k": 1})
    elements = ["localization", "visual_recognizability", "physical_attribution",
                "model_transparency", "actionability"]
    for i in range(int(sys.argv[3])):
        store.rate(run, elements[i % 5], 1 + i % 5, f"rating {i}")
        print(i, flush=True)  # printed only after the commit returned
    """
)


def test_ratings_committed_before_a_sigkill_are_all_there(tmp_path):
    db = tmp_path / "study.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), "ana", "100000"], stdout=subprocess.PIPE, text=True
    )
    committed = -1
    for line in proc.stdout:
        committed = int(line)
        if committed >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of writing the next ones
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    notes = {n for (n,) in con.execute("SELECT note FROM ratings WHERE reader = 'ana'")}
    con.close()
    assert {f"rating {i}" for i in range(committed + 1)} <= notes
    with StudyStore(db, reader="ana") as store:  # and the file opens cleanly for more work
        run = new_run(store)
        store.rate(run, "localization", 5)
        assert store.ratings(run)["localization"]["rating"] == 5


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = tmp_path / "study.sqlite"
    StudyStore(db).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), reader, "150"], stdout=subprocess.DEVNULL)
        for reader in ("ana", "ben")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    counts = dict(con.execute("SELECT reader, COUNT(*) FROM ratings GROUP BY reader"))
    assert counts == {"ana": 150, "ben": 150}
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # one shared run row


@pytest.mark.slow
def test_no_patient_identity_reaches_the_study_file_or_its_exports(tmp_path, capsys):
    """A DICOM with a name, ID and birth date: explain, score, rate, annotate, export, evaluate."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.framework import map_evidence
    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.models import resolve_model

    folder = tmp_path / "dicom"
    write_series(folder, axial_positions(12, spacing=3.0), rows=16, cols=16, description="t1 axial")
    (volume,) = load(folder)
    result = explain(volume, resolve_model("lesion-classifier"), "saliency", target="lesion")
    roi = np.zeros(volume.shape, bool)
    roi[4:8, 4:8, 4:8] = True
    evidence = map_evidence(result.native, roi=roi, scan=volume)
    db = tmp_path / "study.sqlite"
    with StudyStore(db, reader="ana") as store:
        run = store.add_explanation(result)
        store.record_evidence(run, evidence)
        store.rate(run, "localization", 3, "fine")
        store.set_action(run, "accept")
        store.save_annotation(volume.case_id, roi, volume.geometry)
        store.export_csv(tmp_path / "ratings.csv")
        store.export_json(tmp_path / "ratings.json")
    map_path = save(result.native, tmp_path / "map.nii.gz")
    roi_path = save(volume.with_array(roi.astype(np.uint8)), tmp_path / "roi.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(roi_path), "--scan", str(folder), "--json"]) == 0
    evaluated = capsys.readouterr().out
    files = [db, tmp_path / "ratings.csv", tmp_path / "ratings.json"]
    files += [p for p in tmp_path.iterdir() if p.name.startswith("study.sqlite-")]  # WAL, if left
    blobs = [p.read_bytes() for p in files] + [evaluated.encode()]
    needles = [PHI["PatientName"], "Doe", "Jane", PHI["PatientID"], PHI["PatientBirthDate"]]
    for blob in blobs:
        for needle in needles:
            assert needle.encode() not in blob and needle.lower().encode() not in blob.lower(), needle
    assert volume.case_id.encode() in (tmp_path / "ratings.csv").read_bytes()  # the pseudonym is there
