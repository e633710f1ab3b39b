"""The framework sidebar in a shown napari viewer: evidence, ratings saved at once and shown
again, annotation, model evidence off the GUI thread, and the blinded reader study."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from napari_mlmi_interp.io import save
from napari_mlmi_interp.sample import make_sample

from .study_files import one_case_study

pytestmark = pytest.mark.gui


def _sidebar(viewer, widgets, path, reader="ana"):
    from napari_mlmi_interp._widgets import FrameworkSidebar

    sidebar = FrameworkSidebar(viewer, study_path=path, reader=reader)
    widgets.append(sidebar)
    viewer.window.add_dock_widget(sidebar, name="Interpretability framework")
    return sidebar


def _explain(viewer, widgets, qtbot, method="gradcam"):
    from napari_mlmi_interp._widgets import ExplainWidget

    widget = ExplainWidget(viewer)
    widgets.append(widget)
    viewer.window.add_dock_widget(widget, name="Explain")
    widget.model.setCurrentIndex(widget.model.findData("lesion-classifier"))
    widget.method.setCurrentIndex(widget.method.findData(method))
    widget.target.setCurrentIndex(widget.target.findData("lesion"))
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    return next(ly for ly in viewer.layers if ly.metadata.get("kind") == "heatmap")


def _idle(qtbot, sidebar, timeout=120_000):
    qtbot.waitUntil(lambda: not sidebar.busy and sidebar.assessment is not None, timeout=timeout)


def test_rating_is_saved_at_once_and_shown_when_the_case_is_reopened(
    viewer_with_sample, qtbot, widgets, tmp_path
):
    viewer, _scan, mask = viewer_with_sample
    heatmap = _explain(viewer, widgets, qtbot)
    db = tmp_path / "study.sqlite"
    sidebar = _sidebar(viewer, widgets, db)
    sidebar.select(heatmap)
    _idle(qtbot, sidebar)
    assert sidebar.explanation.currentText() == heatmap.name
    # the lesion mask loaded beside the scan (one label, the scan's grid) is the true region
    assert sidebar.region_picker.layer is mask and sidebar.region.currentText() == mask.name
    sidebar.region_picker.combo.setCurrentIndex(0)  # none: no localization figures
    qtbot.waitUntil(lambda: sidebar.assessment["pointing_game"].band == "n/a", timeout=60_000)
    # pick the lesion mask as the true region: the localization figures appear
    sidebar.select_region(mask)
    qtbot.waitUntil(lambda: sidebar.assessment["pointing_game"].value is True, timeout=60_000)
    card = sidebar.cards["localization"]
    assert (
        card.value_labels["pointing_game"].text() == "hit"
        and card.band_labels["pointing_game"].text() == "pass"
    )
    # rate: one row in the file, committed now (read by another connection)
    card.note.setText("on the lesion")
    card.rating.setCurrentIndex(card.rating.findText("4"))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT element, rating, note, reader FROM ratings").fetchall()
    con.close()
    assert rows == [("localization", 4, "on the lesion", "ana")]
    sidebar.cards["actionability"].rating.setCurrentIndex(
        sidebar.cards["actionability"].rating.findText("N/A")
    )
    sidebar.action.setCurrentIndex(sidebar.action.findData("accept"))
    assert "Saved action: accept" in sidebar.status.text()
    sidebar.shutdown()
    # reopen: a new panel on the same study file shows the ratings for this explanation
    again = _sidebar(viewer, widgets, db)
    again.select(heatmap)
    _idle(qtbot, again)
    assert again.cards["localization"].rating.currentText() == "4"
    assert again.cards["localization"].note.text() == "on the lesion"
    assert again.cards["actionability"].rating.currentText() == "N/A"
    assert again.cards["visual_recognizability"].rating.currentText() == "—"
    assert again.action.currentData() == "accept"
    # evidence is stored with the run
    con = sqlite3.connect(db)
    stored = dict(con.execute("SELECT figure, band FROM evidence"))
    con.close()
    assert stored["pointing_game"] == "pass"


def test_annotating_recomputes_localization_and_saves_the_region(
    viewer_with_sample, qtbot, widgets, tmp_path
):
    viewer, _scan, mask = viewer_with_sample
    heatmap = _explain(viewer, widgets, qtbot)
    sidebar = _sidebar(viewer, widgets, tmp_path / "study.sqlite")
    sidebar.select(heatmap)
    _idle(qtbot, sidebar)
    sidebar.annotate()
    layer = viewer.layers.selection.active
    assert layer.metadata["kind"] == "annotation" and layer.mode == "paint"
    assert sidebar.region.currentText() == layer.name
    np.testing.assert_allclose(layer.affine.affine_matrix, heatmap.affine.affine_matrix)
    # the reader paints the lesion (here: copies the truth into the layer)
    layer.data = (np.asarray(mask.data) > 0).astype(np.uint8)
    native = sidebar._current["explanation"].native
    # (the lesion mask loaded beside the scan was the true region until the reader annotated:
    # wait for the painted region itself, saved, not for any figure)
    qtbot.waitUntil(
        lambda: sidebar.store.annotation(native.case_id, reader="ana") is not None, timeout=60_000
    )
    qtbot.waitUntil(
        lambda: sidebar.assessment is not None and sidebar.assessment["pointing_game"].value is True,
        timeout=60_000,
    )
    saved = sidebar.store.annotation(native.case_id, reader="ana")
    assert saved is not None and saved[0].sum() == (np.asarray(mask.data) > 0).sum()


def test_model_evidence_runs_off_the_gui_thread_and_draws_curves(
    viewer_with_sample, qtbot, widgets, tmp_path
):
    viewer, _scan, mask = viewer_with_sample
    heatmap = _explain(viewer, widgets, qtbot)
    sidebar = _sidebar(viewer, widgets, tmp_path / "study.sqlite")
    sidebar.select(heatmap)
    sidebar.select_region(mask)
    _idle(qtbot, sidebar)
    sidebar.model_button.click()
    assert sidebar.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not sidebar.busy and "deletion_auc" in sidebar.assessment, timeout=120_000)
    a = sidebar.assessment
    assert a["pointing_game"].value is True  # the map figures were kept
    assert 0 <= a["deletion_auc"].value <= 1 and 0 <= a["insertion_auc"].value <= 1
    assert len(sidebar.faithfulness_plot.series) == 2 and len(sidebar.randomisation_plot.series) == 1
    assert sidebar.cards["model_transparency"].band_labels["randomisation_final_rho"].text() in (
        "pass",
        "warn",
        "fail",
    )
    assert sidebar.progress.value() == sidebar.progress.maximum()


def test_reader_study_is_blinded_and_resumes(viewer_with_sample, qtbot, widgets, tmp_path):
    viewer, _scan, _mask = viewer_with_sample
    sample = make_sample()
    save(sample.scan, tmp_path / "a.nii.gz")
    save(sample.mask, tmp_path / "a_roi.nii.gz")
    save(sample.scan, tmp_path / "b.nii.gz")
    study_file = tmp_path / "study.json"
    study_file.write_text(
        json.dumps(
            {
                "study": "pilot",
                "cases": [{"scan": "a.nii.gz", "roi": "a_roi.nii.gz"}, {"scan": "b.nii.gz"}],
                "conditions": [
                    {"model": "lesion-classifier", "method": "gradcam", "target": "lesion"},
                    {"model": "lesion-classifier", "method": "saliency", "target": "lesion"},
                ],
                "goal": {"reader": "clinician", "purpose": "trust"},
            }
        )
    )
    db = tmp_path / "study.sqlite"
    sidebar = _sidebar(viewer, widgets, db, reader="ana")
    sidebar.open_study(study_file)
    assert sidebar.purpose.currentText() == "trust"
    order = [i.id for i in sidebar.study.order("ana")]

    def shown():
        return sidebar.study_item is not None and not sidebar.busy and sidebar.assessment is not None

    sidebar.next_case()
    qtbot.waitUntil(shown, timeout=120_000)
    assert sidebar.study_item[1].id == order[0]
    names = [ly.name for ly in viewer.layers]
    assert any("Explanation 1" in n for n in names)
    assert not any(("Grad-CAM" in n or "Saliency" in n) for n in names if "Case" in n)
    assert sidebar.explanation.currentText().startswith("Explanation 1")
    run = sidebar.store.run_info(sidebar.run_id)
    assert run["blinded_label"] == "Explanation 1" and run["method"] in ("gradcam", "saliency")
    sidebar.cards["localization"].rating.setCurrentIndex(3)  # "3"
    sidebar.study_item_seen = sidebar.study_item
    sidebar.next_case()
    qtbot.waitUntil(lambda: shown() and sidebar.study_item[1].id == order[1], timeout=120_000)
    assert "2 of 4" in sidebar.study_status.text()
    assert not any("Explanation 1" in ly.name for ly in viewer.layers)  # the previous item is gone
    sidebar.shutdown()
    # the reader comes back: item 1 is done, item 2 was shown but not finished -> it comes again
    back = _sidebar(viewer, widgets, db, reader="ana")
    back.open_study(study_file)
    assert "1 of 4 done" in back.study_status.text()
    back.next_case()
    qtbot.waitUntil(lambda: back.study_item is not None and not back.busy, timeout=120_000)
    assert back.study_item[1].id == order[1] and back.study_item[0] == 1


def test_next_case_loads_off_the_gui_thread_and_can_be_cancelled(
    viewer_with_sample, qtbot, widgets, tmp_path
):
    """Preparing a study case (scan read, model loaded, method run) is a job with Cancel."""
    viewer, _scan, _mask = viewer_with_sample
    study_file = one_case_study(tmp_path)
    sidebar = _sidebar(viewer, widgets, tmp_path / "study.sqlite", reader="ana")
    sidebar.open_study(study_file)
    before = [ly.name for ly in viewer.layers]
    sidebar.next_case()
    # next_case returned at once: the case is being prepared in a worker, Cancel is offered
    assert sidebar.busy and sidebar.cancel_button.isEnabled() and not sidebar.model_button.isEnabled()
    assert "Preparing Explanation 1" in sidebar.status.text()
    sidebar.cancel_button.click()
    qtbot.waitUntil(lambda: not sidebar.busy, timeout=120_000)
    assert sidebar.status.text() == "Cancelled."
    assert [ly.name for ly in viewer.layers] == before and sidebar.study_item is None
    assert sidebar.model_button.isEnabled() and not sidebar.cancel_button.isEnabled()
    assert sidebar.store.done_items("pilot", reader="ana") == set()  # nothing was shown, nothing done


def test_keyboard_shortcuts_step_toggle_and_rate(viewer_with_sample, qtbot, widgets, tmp_path):
    from napari_mlmi_interp._widgets.sidebar.shortcuts import next_unrated

    viewer, _scan, _mask = viewer_with_sample
    first = _explain(viewer, widgets, qtbot, method="gradcam")
    sidebar = _sidebar(viewer, widgets, tmp_path / "study.sqlite")
    sidebar.select(first)
    _idle(qtbot, sidebar)
    assert "Alt+Right: next explanation" in sidebar.toolTip()
    keys = {str(k): v for k, v in viewer.keymap.items()}
    assert {"Alt+Right", "Alt+Left", "Alt+O", "Alt+1", "Alt+5", "Alt+0"} <= set(keys)
    # Alt+O hides and shows the heatmap
    keys["Alt+O"](viewer)
    assert not first.visible
    keys["Alt+O"](viewer)
    assert first.visible
    # Alt+4 rates the first unrated element, Alt+0 the next one N/A
    assert next_unrated(sidebar) == "localization"
    keys["Alt+4"](viewer)
    second = next_unrated(sidebar)
    assert second not in (None, "localization")
    keys["Alt+0"](viewer)
    assert sidebar.cards["localization"].rating.currentText() == "4"
    assert sidebar.cards[second].rating.currentText() == "N/A"
    # Alt+Right / Alt+Left step through the explanations (a second one: saliency)
    _explain(viewer, widgets, qtbot, method="saliency")
    sidebar.refresh_layers()
    assert sidebar.explanation.count() == 2
    index = sidebar.explanation.currentIndex()
    keys["Alt+Right"](viewer)
    assert sidebar.explanation.currentIndex() == (index + 1) % 2
    keys["Alt+Left"](viewer)
    assert sidebar.explanation.currentIndex() == index
    sidebar.shutdown()
