"""The sidebar's model without Qt or napari: the assessment session (ratings committed at once
and reloaded, stale evidence dropped, drawn regions saved) and the reader-study session
(per-reader order, resume, an item prepared in the scan's geometry)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from napari_mlmi_interp.errors import InputError, MlmiError
from napari_mlmi_interp.framework import Assessment, Goal, map_evidence
from napari_mlmi_interp.framework.reader_study import PreparedCase, ReaderStudySession
from napari_mlmi_interp.framework.session import AssessmentSession, MapRequest
from napari_mlmi_interp.io import save
from napari_mlmi_interp.sample import make_sample
from napari_mlmi_interp.store import StudyStore


@pytest.fixture(scope="module")
def sample():
    return make_sample()


@pytest.fixture(scope="module")
def classifier():
    from napari_mlmi_interp.models.held import held_models

    return held_models().resolve("lesion-classifier")


@pytest.fixture(scope="module")
def gradcam(sample, classifier):
    from napari_mlmi_interp.explain import explain

    return explain(sample.scan, classifier, "gradcam", target="lesion")


class Recorder:
    """Collects what a session emits, by signal name."""

    def __init__(self, session: AssessmentSession) -> None:
        self.got: dict[str, list] = {}
        for name in (
            "explanation_changed",
            "evidence_changed",
            "ratings_loaded",
            "action_loaded",
            "saved",
            "error",
        ):
            getattr(session, name).connect(
                lambda value, name=name: self.got.setdefault(name, []).append(value)
            )

    def __getitem__(self, name: str) -> list:
        return self.got.get(name, [])


def _session(path, reader="ana"):
    session = AssessmentSession(reader, opener=StudyStore)
    events = Recorder(session)
    assert session.open_store(path)
    return session, events


def test_ratings_are_committed_at_once_and_reloaded_on_select(tmp_path, sample, gradcam):
    db = tmp_path / "study.sqlite"
    session, events = _session(db)
    assert not session.rate("localization", 4)  # nothing selected yet: refused, said why
    assert "pick an explanation" in events["error"][-1]
    session.select(gradcam, scan=sample.scan)
    assert events["explanation_changed"][-1].explanation is gradcam and session.run_id is not None
    assert events["ratings_loaded"][-1] == {}
    assert session.rate("localization", 4, "on the lesion")
    assert session.rate("actionability", None)
    assert session.set_action("accept")
    assert "Saved action: accept" in events["saved"][-1]
    with sqlite3.connect(db) as con:  # another connection sees the rows now
        rows = sorted(con.execute("SELECT element, rating, note, reader FROM ratings").fetchall(), key=str)
    assert rows == [("actionability", None, "", "ana"), ("localization", 4, "on the lesion", "ana")]
    session.close()
    # a new session on the same file, the same explanation: the ratings come back
    again, got = _session(db)
    again.select(gradcam, scan=sample.scan)
    assert got["ratings_loaded"][-1]["localization"] == {"rating": 4, "note": "on the lesion"}
    assert got["ratings_loaded"][-1]["actionability"]["rating"] is None
    assert got["action_loaded"][-1] == "accept"
    # another reader has none of them
    again.set_reader("ben")
    assert got["ratings_loaded"][-1] == {} and got["action_loaded"][-1] is None
    again.close()


def test_a_stale_map_result_is_dropped_and_the_model_figures_are_kept(tmp_path, sample, gradcam):
    session, events = _session(tmp_path / "study.sqlite")
    session.select(gradcam, scan=sample.scan)
    old = session.map_request()
    session.set_region(sample.mask)  # the reader picks a region: a newer request follows
    new = session.map_request()
    assert isinstance(old, MapRequest) and new.generation > old.generation and new.mask is not None
    stale, fresh = old.compute(), new.compute()
    assert not session.deliver(old, stale) and session.assessment is None and not events["evidence_changed"]
    assert session.deliver(new, fresh)
    assert session.assessment["pointing_game"].value is True
    assert events["evidence_changed"] == [session.assessment]
    # the old result arriving late still changes nothing
    assert not session.deliver(old, stale) and session.assessment["pointing_game"].value is True
    # model figures shown earlier survive a recomputation of the map's figures
    fake = Assessment({"deletion_auc": _figure("deletion_auc", 0.2)}, {"deletion": {"x": [0], "y": [1]}})
    session.show(session.assessment.merged(fake))
    again = session.map_request()
    assert session.deliver(again, again.compute())
    assert session.assessment["deletion_auc"].value == 0.2 and "deletion" in session.assessment.curves
    # the figures are stored with the run
    assert session.store.evidence(session.run_id)["pointing_game"]["band"] == "pass"
    # the same figures as map_evidence called directly
    direct = map_evidence(
        gradcam.native, roi=sample.mask.array > 0, scan=sample.scan, percent=session.percent
    )
    assert session.assessment["topk_dice"].value == direct["topk_dice"].value
    session.close()


def _figure(key, value):
    from napari_mlmi_interp.framework import Figure

    return Figure(key, value, "pass", "model_transparency")


def test_selecting_another_explanation_makes_pending_results_stale(tmp_path, sample, gradcam):
    session, _events = _session(tmp_path / "study.sqlite")
    session.select(gradcam, scan=sample.scan)
    pending = session.map_request()
    session.clear()
    assert not session.deliver(pending, pending.compute()) and session.assessment is None
    assert session.model_request() is None


def test_a_drawn_region_is_saved_once_and_restored(tmp_path, sample, gradcam):
    session, _events = _session(tmp_path / "study.sqlite")
    session.select(gradcam, scan=sample.scan)
    assert session.saved_region() is None
    mask = session.set_region(sample.mask, "true region", drawn=True)
    assert mask.dtype == bool and mask.sum() == (sample.mask.array > 0).sum()
    restored = session.saved_region()
    assert restored.shape == gradcam.native.shape and restored.array.sum() == mask.sum()
    # a region that is no mask on the map's grid is refused with a reason, and dropped
    with pytest.raises(InputError, match="map's grid"):
        session._on_map_grid(np.zeros((2, 2, 2)), gradcam.native)
    errors = []
    session.error.connect(errors.append)
    assert session.set_region(np.zeros((2, 2, 2))) is None and session.region is None
    assert "map's grid" in errors[-1]
    session.close()


def test_model_request_needs_a_model_and_the_goal_drives_recommendations(
    tmp_path, sample, gradcam, classifier
):
    session, events = _session(tmp_path / "study.sqlite")
    session.select(gradcam, scan=sample.scan)
    assert session.model_request() is None and "does not carry its model" in events["error"][-1]
    session.select(gradcam, model=classifier, scan=sample.scan)
    assert session.model_request().current is session.current
    assert session.recommended(()) == []  # no element chosen: nothing to recommend
    goals = []
    session.goal_changed.connect(goals.append)
    session.set_goal(Goal("classification", "developer", "debug"))
    assert goals == [session.goal]
    recs = session.recommended()
    assert recs and all(set(r.served) <= set(session.goal.elements) for r in recs)
    assert session.recommended(["localization"]) != session.recommended(["model_transparency"])
    session.close()


def test_an_unusable_study_file_is_reported_not_raised(tmp_path):
    bad = tmp_path / "not.sqlite"
    bad.write_text("this is not a database " * 100)
    session = AssessmentSession("ana", opener=StudyStore)
    errors = []
    session.error.connect(errors.append)
    assert not session.open_store(bad) and session.store is None and errors


# -- reader study ------------------------------------------------------------------------------
def _write_study(tmp_path, sample):
    save(sample.scan, tmp_path / "a.nii.gz")
    save(sample.mask, tmp_path / "a_roi.nii.gz")
    save(sample.scan, tmp_path / "b.nii.gz")
    path = tmp_path / "study.json"
    path.write_text(
        json.dumps(
            {
                "study": "pilot",
                "cases": [{"scan": "a.nii.gz", "roi": "a_roi.nii.gz"}, {"scan": "b.nii.gz"}],
                "conditions": [
                    {"model": "lesion-classifier", "method": "gradcam", "target": "lesion"},
                    {"model": "lesion-classifier", "method": "saliency", "target": "lesion"},
                ],
            }
        )
    )
    return path


def test_reader_study_goes_in_the_readers_order_and_resumes(tmp_path, sample):
    study_file = _write_study(tmp_path, sample)
    session, _events = _session(tmp_path / "study.sqlite")
    study = ReaderStudySession.open(study_file, session)
    order = [i.id for i in study.study.order("ana")]
    assert study.progress() == (0, 4) and study.status() == "pilot: 0 of 4 done"
    position, item = study.next_item()
    assert (position, item.id) == (0, order[0])
    study.finish(run_id=None)  # nothing shown yet: nothing is marked
    assert study.progress() == (0, 4)
    study.current = (position, item)
    study.finish(run_id=None)
    assert study.progress() == (1, 4)
    position, item = study.next_item()
    assert (position, item.id) == (1, order[1])
    session.close()
    # the reader comes back: the first item is done, the second comes again
    back, _ = _session(tmp_path / "study.sqlite")
    again = ReaderStudySession.open(study_file, back)
    assert again.status() == "pilot: 1 of 4 done"
    assert again.next_item()[1].id == order[1]
    # another reader starts at their own first item
    back.set_reader("ben")
    assert again.progress() == (0, 4) and again.next_item()[1].id == again.study.order("ben")[0].id
    back.close()
    with pytest.raises(InputError, match="reader name"):
        ReaderStudySession.open(study_file, back, reader=" ")
    with pytest.raises(MlmiError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{nope")
        ReaderStudySession.open(tmp_path / "bad.json", back)


def test_prepare_gives_the_explanation_in_the_scans_geometry(tmp_path, sample):
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models.held import held_models

    study_file = _write_study(tmp_path, sample)
    session, _events = _session(tmp_path / "study.sqlite")
    study = ReaderStudySession.open(study_file, session)
    item = next(i for i in study.study.items if i.id == "c1-k1")  # case a (with its ROI), Grad-CAM
    seen = []
    case = ReaderStudySession.prepare(4, item, progress=lambda done, total: seen.append((done, total)))
    assert isinstance(case, PreparedCase) and case.label == "Explanation 5" and case.scan.name == "Case"
    assert held_models().get(case.model_key) is case.model
    assert case.roi is not None and case.roi.geometry.same_grid(sample.mask.geometry, atol_mm=1e-4)
    direct = explain(sample.scan, case.model, "gradcam", target="lesion")
    native, expected = case.explanation.native, direct.native
    assert native.shape == expected.shape == sample.scan.shape
    np.testing.assert_allclose(native.index_to_lps, expected.index_to_lps, atol=1e-4)
    np.testing.assert_allclose(native.array, expected.array, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(case.explanation.peak_lps(), direct.peak_lps(), atol=1e-3)
    study.shown(case)
    assert study.current == (4, item)
    session.close()
