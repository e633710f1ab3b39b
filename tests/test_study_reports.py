"""Reader-study outputs: `study analyze` (JSON, HTML), DICOM SR read back, the progress dialog."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.framework.study import ReaderStudy, StudyItem
from napari_mlmi_interp.store import StudyStore
from napari_mlmi_interp.study.progress import is_complete, reader_progress

from .dicom_factory import PHI, axial_positions, write_series
from .study_files import one_case_study


def _content_items(ds):
    """(value type, concept code value, value) of every content item, depth first."""
    out = []
    for item in getattr(ds, "ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""
        vt = item.ValueType
        if vt == "CODE":
            value = item.ConceptCodeSequence[0].CodeValue
        elif vt == "TEXT":
            value = item.TextValue
        elif vt == "PNAME":
            value = str(item.PersonName)
        else:
            value = None
        out.append((vt, name, value))
        out += _content_items(item)
    return out


@pytest.fixture(scope="module")
def rated_dicom(tmp_path_factory):
    """A DICOM series with patient identity, explained, rated by two readers."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.io import load
    from napari_mlmi_interp.models import resolve_model

    tmp = tmp_path_factory.mktemp("sr")
    write_series(tmp / "dicom", axial_positions(12, spacing=3.0), rows=16, cols=16, description="t1 axial")
    (volume,) = load(tmp / "dicom")
    result = explain(volume, resolve_model("lesion-classifier"), "saliency", target="lesion")
    db = tmp / "study.sqlite"
    with StudyStore(db, reader="ana") as s:
        run = s.add_explanation(result)
        s.rate(run, "localization", 4, "on the lesion's rim")
        s.rate(run, "actionability", None)
        s.set_action(run, "refer")
        s.rate(run, "localization", 2, reader="ben")
        # a run on a scan that did not come from DICOM: rated, but no SR is possible
        other = s.add_run(
            "case-00000000000000aa", model="m", model_sha256="abc", method="gradcam", target="t"
        )
        s.rate(other, "localization", 3)
    return tmp, db, volume


def test_sr_per_rated_run_and_reader_reads_back(rated_dicom, capsys):
    import pydicom

    tmp, db, volume = rated_dicom
    out = tmp / "sr"
    assert main(["ratings", "export", str(db), "--sr", str(out)]) == 2  # where are the images?
    assert "--sr needs --dicom FOLDER" in capsys.readouterr().err
    assert main(["ratings", "export", str(db), "--sr", str(out), "--dicom", str(tmp / "dicom")]) == 0
    said = capsys.readouterr().out
    assert "2 Structured Reports" in said and "1 rated runs have none: their scan is not among" in said
    files = sorted(out.iterdir())
    assert len(files) == 2
    refs = volume.references
    by_reader = {}
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert ds.StudyInstanceUID == refs["StudyInstanceUID"]  # a new series of the source study
        assert ds.SeriesInstanceUID != refs["SeriesInstanceUID"]
        assert ds.PatientName == volume.case_id and ds.PatientID == volume.case_id
        assert ds.PatientIdentityRemoved == "YES"
        ev = ds.CurrentRequestedProcedureEvidenceSequence[0]
        assert ev.StudyInstanceUID == refs["StudyInstanceUID"]
        series = ev.ReferencedSeriesSequence[0]
        assert series.SeriesInstanceUID == refs["SeriesInstanceUID"]
        assert sorted(i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence) == sorted(
            refs["SOPInstanceUIDs"]
        )
        assert {i.ReferencedSOPClassUID for i in series.ReferencedSOPSequence} == {refs["SOPClassUID"]}
        items = _content_items(ds)
        reader = next(v for vt, _n, v in items if vt == "PNAME")
        by_reader[reader] = items
        blob = f.read_bytes()
        for needle in (PHI["PatientName"], PHI["PatientID"], PHI["PatientBirthDate"]):
            assert needle.encode() not in blob
    ana, ben = by_reader["ana^"], by_reader["ben^"]
    assert ("CODE", "LOC", "R4") in ana and ("TEXT", "LOC", "on the lesion's rim") in ana
    assert ("CODE", "ACTION", "385432009") in ana  # actionability: not applicable (SNOMED CT)
    assert ("CODE", "READERACTION", "REFER") in ana
    assert ("CODE", "LOC", "R2") in ben and not any(n == "READERACTION" for _vt, n, _v in ben)
    assert ("CODE", "121071", None) not in ana  # sanity of the walker: values are read
    if shutil.which("dciodvfy"):
        for f in files:
            run = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, errors="replace")
            errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
            assert errors == [], errors


def test_sr_keeps_identity_only_when_asked(rated_dicom):
    import pydicom

    tmp, db, _volume = rated_dicom
    out = tmp / "sr-identified"
    argv = ["ratings", "export", str(db), "--sr", str(out), "--dicom", str(tmp / "dicom"), "--keep-identity"]
    assert main(argv) == 0
    ds = pydicom.dcmread(sorted(out.iterdir())[0])
    assert str(ds.PatientName) == PHI["PatientName"] and ds.PatientID == PHI["PatientID"]
    assert "PatientIdentityRemoved" not in ds


def test_analyze_writes_json_and_an_html_report_with_plots(tmp_path, capsys):
    from napari_mlmi_interp.framework import Assessment
    from napari_mlmi_interp.framework.evidence import Figure

    rng = np.random.default_rng(2)
    truth = rng.integers(1, 6, 10)
    paths = []
    for r, reader in enumerate(("ana", "ben")):
        paths.append(tmp_path / f"{reader}.sqlite")
        with StudyStore(paths[-1], reader=reader) as s:
            for i in range(10):
                run = s.add_run(f"case-{i:016x}", model="m", model_sha256="abc", method="gradcam", target="t")
                s.rate(run, "localization", int(np.clip(truth[i] + r * (i % 2), 1, 5)))
                fig = Figure("topk_dice", float(truth[i]) / 6, "pass")
                s.record_evidence(run, Assessment(figures={"topk_dice": fig}))
    html = tmp_path / "report.html"
    argv = ["study", "analyze", *map(str, paths), "--json", "--html", str(html), "--bootstrap", "200"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    out = json.loads(text[text.index("{") :])
    assert set(out) >= {"agreement", "pairwise_kappa", "rating_vs_figures", "league", "intra_reader"}
    loc = out["agreement"]["localization"]
    assert (loc["readers"], loc["items"]) == (2, 10) and len(loc["ci95"]) == 2
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3  # distributions, agreement, ratings vs figures
    assert "Agreement between readers" in page and "League table" in page
    dice = out["rating_vs_figures"]["localization"]["topk_dice"]
    assert dice["n"] == 10 and dice["spearman_rho"] > 0.7
    assert main(["study", "analyze", str(paths[0])]) == 0  # the text summary
    assert "agreement (Krippendorff's alpha" in capsys.readouterr().out


def _study(tmp_path, readers=("ana", "ben", "cho")):
    items = [
        StudyItem(f"c{c}-k1", c - 1, 0, tmp_path / f"{c}.nii.gz", None, "m", "saliency", "lesion")
        for c in (1, 2)
    ]
    return ReaderStudy("pilot", items, readers=readers)


def _finish(path, reader, items, study="pilot"):
    with StudyStore(path, reader=reader) as s:
        for n, item in enumerate(items):
            run = s.add_run(
                f"case-{n:016x}", model="m", model_sha256="abc", method="saliency", target="lesion"
            )
            s.rate(run, "localization", 2 + n + len(reader) % 2)
            s.mark_done(study, item, run_id=run)


def test_progress_across_readers_files(tmp_path):
    study = _study(tmp_path)
    _finish(tmp_path / "ana.sqlite", "ana", ["c1-k1", "c2-k1"])
    _finish(tmp_path / "ben.sqlite", "ben", ["c1-k1", "c9-k9"])  # an id not in the study: not counted
    _finish(tmp_path / "ben.sqlite", "ben", ["c1-k1"], study="another study")
    progress = reader_progress(study, [tmp_path / "ana.sqlite", tmp_path / "ben.sqlite"])
    assert [(p.reader, p.done, p.left) for p in progress] == [("ana", 2, 0), ("ben", 1, 1), ("cho", 0, 2)]
    assert not is_complete(progress)
    unlisted = reader_progress(_study(tmp_path, readers=()), [tmp_path / "ana.sqlite"])
    assert is_complete(unlisted) and [p.reader for p in unlisted] == ["ana"]


@pytest.mark.gui
def test_study_dialog_shows_readers_left_and_opens_the_report_when_complete(qtbot, tmp_path):
    from napari_mlmi_interp._widgets.sidebar.study_progress import StudyProgressDialog

    study = _study(tmp_path, readers=("ana", "ben"))
    _finish(tmp_path / "ana.sqlite", "ana", ["c1-k1", "c2-k1"])
    _finish(tmp_path / "ben.sqlite", "ben", ["c1-k1"])
    dialog = StudyProgressDialog(study, tmp_path / "ana.sqlite")
    qtbot.addWidget(dialog)
    dialog.show()

    def cells():
        return [[dialog.table.item(r, c).text() for c in range(3)] for r in range(dialog.table.rowCount())]

    assert cells() == [["ana", "2 of 2", "0"], ["ben", "0 of 2", "2"]]  # ben's file is not read yet
    dialog.add_files([tmp_path / "ben.sqlite"])
    assert cells()[1] == ["ben", "1 of 2", "1"] and dialog.report_dialog is None
    assert "1 items left across 2 readers" in dialog.status.text()
    _finish(tmp_path / "ben.sqlite", "ben", ["c1-k1", "c2-k1"])
    dialog.refresh()  # complete now: the analysis runs off the GUI thread and its report opens
    qtbot.waitUntil(
        lambda: dialog.report_dialog is not None and dialog.report_dialog.isVisible(), timeout=60_000
    )
    report = dialog.report_dialog
    assert "Agreement between readers" in report.browser.toPlainText()
    assert dialog.report_path.is_file() and dialog.report_path.name == "pilot-analysis.html"
    report.resize(900, 700)
    qtbot.wait(200)
    image = report.grab().toImage()
    pixels = np.array([[image.pixelColor(x, y).red() for x in range(0, 900, 9)] for y in range(0, 700, 7)])
    assert (pixels < 128).mean() > 0.005  # text and plots were drawn, not a blank page
    report.grab().save(str(tmp_path / "report.png"))


@pytest.mark.gui
def test_the_last_next_case_opens_progress_and_the_report(viewer_with_sample, qtbot, widgets, tmp_path):
    """ana finishes a study ben already finished (one shared file): the dialog and report open."""
    from napari_mlmi_interp._widgets import FrameworkSidebar

    viewer = viewer_with_sample[0]
    study_file = one_case_study(tmp_path, readers=["ana", "ben"])
    db = tmp_path / "study.sqlite"
    _finish(db, "ben", ["c1-k1"])
    sidebar = FrameworkSidebar(viewer, study_path=db, reader="ana")
    widgets.append(sidebar)
    viewer.window.add_dock_widget(sidebar, name="Interpretability framework")
    sidebar.open_study(study_file)
    assert sidebar.study_controls.progress_button.isEnabled()
    dialog = sidebar.show_study_progress()
    assert [dialog.table.item(r, 2).text() for r in range(2)] == ["1", "0"]  # ana 1 left, ben none
    sidebar.next_case()
    qtbot.waitUntil(lambda: sidebar.study_item is not None and not sidebar.busy, timeout=120_000)
    sidebar.cards["localization"].rating.setCurrentIndex(4)  # "4"
    sidebar.next_case()  # the last one: finished, and the study is complete
    assert "all 1 done" in sidebar.study_status.text()
    assert sidebar.study_dialog is dialog and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.report_dialog is not None, timeout=60_000)
    assert "ana, ben" in dialog.report_dialog.browser.toPlainText()
    assert (tmp_path / "pilot-analysis.html").is_file()


def test_sr_of_a_real_scanner_series_references_exactly_its_instances(shared_dicom, tmp_path):
    """The Siemens PD/T2 series (two echoes in one series): the SR of the PD echo's rating
    references the PD images, as pydicom reads them from the files, and no T2 image."""
    import pydicom

    from napari_mlmi_interp.io import load

    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    pd_echo = next(v for v in load(folder) if str(v.metadata["EchoNumber"]) == "1")
    by_echo: dict[str, set[str]] = {}
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_echo.setdefault(str(ds.EchoNumbers), set()).add(ds.SOPInstanceUID)
        study, series, sop_class = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID
    db = tmp_path / "study.sqlite"
    with StudyStore(db, reader="ana") as s:
        run = s.add_run(pd_echo.case_id, model="m", model_sha256="abc", method="gradcam", target="t")
        s.rate(run, "localization", 5)
    assert main(["ratings", "export", str(db), "--sr", str(tmp_path / "sr"), "--dicom", str(folder)]) == 0
    (path,) = (tmp_path / "sr").iterdir()
    ev = pydicom.dcmread(path).CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.StudyInstanceUID == study
    (ref,) = ev.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == series
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedSOPSequence} == by_echo["1"]
    assert {i.ReferencedSOPClassUID for i in ref.ReferencedSOPSequence} == {sop_class}
    assert not by_echo["1"] & by_echo["2"]
