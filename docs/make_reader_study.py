"""A reader study from end to end, with simulated readers: the walkthrough of docs/framework.md.

    xvfb-run -a python docs/make_reader_study.py [--out DIR]

1. writes eight sample scans with their lesion masks and a study file (2 methods x 8 cases,
   readers ana, ben and cho);
2. for each reader, in the reader's own blinded order, prepares every item exactly as the
   sidebar's *Next case* does (:meth:`ReaderStudySession.prepare`), stores the run and its
   map evidence against the case's region, and records **simulated** ratings (a reader's
   localization rating follows the relevance mass in the region, plus that reader's own
   noise) and an action, each reader in their own study file;
3. merges the three files (``study merge``), analyses them (``study analyze --html``), writes
   the SRs (``ratings export --sr`` needs DICOM scans: skipped here, the sample is NIfTI) and
   saves docs/images/reader_study_report.png: the report as the reader-study dialog shows it.

The ratings are simulated so that the page can be made anywhere; the pipeline around them
(preparation, storage, merge, statistics, report) is the real one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
READERS = {"ana": 0.4, "ben": 0.6, "cho": 0.9}  # each simulated reader's noise (rating points)


def make_study(folder: Path) -> Path:
    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.sample import make_sample

    cases = []
    for seed in range(8):
        sample = make_sample(seed)
        save(sample.scan, folder / f"case{seed}.nii.gz")
        save(sample.mask, folder / f"case{seed}_roi.nii.gz")
        cases.append({"scan": f"case{seed}.nii.gz", "roi": f"case{seed}_roi.nii.gz"})
    study = {
        "study": "lesion-xai-pilot",
        "cases": cases,
        "conditions": [
            {"model": "lesion-classifier", "method": "gradcam", "target": "lesion"},
            {"model": "lesion-classifier", "method": "saliency", "target": "lesion"},
        ],
        "goal": {"task": "classification", "reader": "clinician", "purpose": "trust"},
        "readers": list(READERS),
    }
    path = folder / "study.json"
    path.write_text(json.dumps(study, indent=1))
    return path


def rate_as(reader: str, noise: float, study_path: Path, db: Path, prepared: dict) -> None:
    """One simulated reader's pass through the study, in their own order, into their own file."""
    from napari_mlmi_interp.framework import map_evidence
    from napari_mlmi_interp.framework.reader_study import ReaderStudySession
    from napari_mlmi_interp.framework.study import ReaderStudy
    from napari_mlmi_interp.store import StudyStore

    rng = np.random.default_rng(sum(map(ord, reader)))
    study = ReaderStudy.load(study_path)
    if not prepared:  # every reader sees the same runs: prepare each item once
        for position, item in enumerate(study.items):
            case = ReaderStudySession.prepare(position, item)
            roi = np.asarray(case.roi.array) > 0
            prepared[item.id] = (
                case.explanation,
                map_evidence(case.explanation.native, roi=roi, scan=case.scan),
            )
    masses = sorted(float(ev["relevance_mass_accuracy"].value) for _e, ev in prepared.values())
    with StudyStore(db, reader=reader) as store:
        for position, item in enumerate(study.order(reader)):
            explanation, evidence = prepared[item.id]
            run = store.add_explanation(explanation, blinded_label=study.label(position))
            store.record_evidence(run, evidence)
            mass = float(evidence["relevance_mass_accuracy"].value)
            seen = 1 + 4 * masses.index(mass) / (len(masses) - 1)  # 1-5 by the mass's rank
            for element, value in {"localization": seen, "visual_recognizability": 0.5 + 0.8 * seen}.items():
                store.rate(run, element, int(np.clip(round(value + rng.normal(0, noise)), 1, 5)))
            act = None if rng.random() < 0.15 else int(np.clip(round(seen + rng.normal(0, 1.2)), 1, 5))
            store.rate(run, "actionability", act)
            store.set_action(run, "accept" if seen + rng.normal(0, noise) > 3 else "refer")
            store.mark_done(study.name, item.id, run_id=run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None, help="keep the study here (default: a temp folder)")
    args = parser.parse_args()
    from napari_mlmi_interp._display import ensure_display
    from napari_mlmi_interp.cli import main as cli

    out = args.out or Path(tempfile.mkdtemp(prefix="mlmi-reader-study-"))
    out.mkdir(parents=True, exist_ok=True)
    study_path = make_study(out)
    prepared: dict = {}
    for reader, noise in READERS.items():
        rate_as(reader, noise, study_path, out / f"{reader}.sqlite", prepared)
    files = [str(out / f"{r}.sqlite") for r in READERS]
    cli(["study", "merge", str(out / "all.sqlite"), *files])
    cli(["study", "analyze", str(out / "all.sqlite"), "--html", str(out / "analysis.html")])
    cli(["ratings", "export", str(out / "all.sqlite"), "--csv", str(out / "ratings.csv")])

    ensure_display()
    from qtpy.QtWidgets import QApplication

    from napari_mlmi_interp._widgets.sidebar.study_progress import StudyProgressDialog
    from napari_mlmi_interp.framework.study import ReaderStudy

    app = QApplication.instance() or QApplication([])
    dialog = StudyProgressDialog(ReaderStudy.load(study_path), out / "all.sqlite")
    dialog.show()
    while dialog.report_dialog is None or dialog.jobs.busy:  # complete: the report opens by itself
        app.processEvents()
    report = dialog.report_dialog
    report.resize(1000, 1500)
    app.processEvents()
    images = HERE / "images"
    images.mkdir(exist_ok=True)
    report.grab().save(str(images / "reader_study_report.png"))
    bar = report.browser.verticalScrollBar()
    bar.setValue(bar.maximum())  # the figures against ratings and the league table
    app.processEvents()
    report.grab().save(str(images / "reader_study_report_end.png"))
    dialog.grab().save(str(images / "reader_study_progress.png"))
    print(images / "reader_study_report.png", out)


if __name__ == "__main__":
    main()
