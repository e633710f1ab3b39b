"""The Explain and prototype panels in a shown napari viewer (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytestmark = pytest.mark.gui

#: Generous waits: a loaded 2-core machine slows everything down, and these tests check
#: behaviour, not speed (the GUI's stall and cancel latency are in benchmarks/gui.py).
PATIENT_MS = 600_000


def _explain_widget(viewer, widgets, model="lesion-classifier", method="gradcam"):
    from napari_mlmi_interp._widgets import ExplainWidget

    widget = ExplainWidget(viewer)
    widgets.append(widget)
    widget.budget.setValue(2048)  # IG on the demo classifier: about 0.5 GB a sample (explain.budget)
    viewer.window.add_dock_widget(widget, name="Explain")
    widget.model.setCurrentIndex(widget.model.findData(model))
    widget.method.setCurrentIndex(widget.method.findData(method))
    widget.target.setCurrentIndex(widget.target.findData("lesion"))
    return widget


def _wait_idle(qtbot, widget, timeout=PATIENT_MS):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def test_run_adds_heatmap_and_contour_in_the_scans_geometry(viewer_with_sample, qtbot, widgets):
    viewer, scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets)
    assert widget.scan.currentText() == scan.name
    widget.run()
    _wait_idle(qtbot, widget)
    result = widget.last_result
    assert result is not None and result.method == "gradcam"
    kinds = {ly.metadata.get("kind"): ly for ly in viewer.layers if ly.metadata.get("group")}
    assert {"heatmap", "contour"} <= set(kinds)
    heat, contour = kinds["heatmap"], kinds["contour"]
    # short names for the layer list; the scan in the name group and the metadata
    assert heat.name == "Grad-CAM · lesion" and contour.name == "Grad-CAM · lesion · top 1%"
    assert heat.metadata["group"] == f"{scan.name} · Grad-CAM · lesion"
    assert heat.metadata["scan_name"] == contour.metadata["scan_name"] == scan.name
    for layer in (heat, contour):
        np.testing.assert_allclose(layer.affine.affine_matrix, scan.affine.affine_matrix)
        assert layer.data.shape == scan.data.shape
    # the heatmap's brightest voxel, in world mm, is the result's peak
    index = np.unravel_index(int(np.argmax(np.asarray(heat.data))), heat.data.shape)
    world = np.asarray(heat.data_to_world(index))
    np.testing.assert_allclose(world, result.peak_lps(), atol=1e-4)
    # the contour is the top 5 %; k changes live
    before = int(np.count_nonzero(contour.data))
    assert 0 < before <= 0.051 * contour.data.size
    widget.percent.setValue(10.0)
    assert np.count_nonzero(contour.data) > before
    assert contour.name.endswith("top 10%")
    assert "lesion" in widget.status.text()


def test_progress_is_monotonic_and_cancel_adds_no_layer(viewer_with_sample, qtbot, widgets):
    viewer, _scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets, method="integrated_gradients")
    # long enough to cancel mid-run; trapezoid steps: Captum's Gauss-Legendre nodes for 1000
    # steps are an eigenproblem that takes seconds before the first batch on a busy machine
    widget.param_widgets["n_steps"].setValue(1000)
    widget.param_widgets["method"].setCurrentText("riemann_trapezoid")
    n_layers = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: len(widget.progress_seen) >= 2, timeout=PATIENT_MS)
    widget.cancel_button.click()
    _wait_idle(qtbot, widget, timeout=PATIENT_MS)
    done = [d for d, _t in widget.progress_seen]
    assert done == sorted(done)
    assert done[-1] < 1000
    assert len(viewer.layers) == n_layers
    assert "Cancelled" in widget.status.text()
    assert widget.last_result is None
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_a_model_file_loads_off_the_gui_thread_and_a_run_waits_for_it(viewer_with_sample, qtbot, widgets):
    from napari_mlmi_interp.models.registry import zoo_dir

    viewer, _scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets)
    path = str(zoo_dir() / "lesion-classifier.json")
    widget.load_model_file(path)
    assert widget.loader.busy and widget.busy  # the weights are read in a worker thread
    widget.run()  # queued until the model has loaded
    assert "once the model has loaded" in widget.status.text()
    _wait_idle(qtbot, widget)
    assert widget.model.currentData() == path and widget.model.currentText() == "lesion-classifier (file)"
    result = widget.last_result
    assert result is not None and result.method == "gradcam" and result.target["name"] == "lesion"
    assert viewer.layers["Grad-CAM · lesion"] is not None


def test_event_loop_keeps_turning_while_integrated_gradients_runs(viewer_with_sample, qtbot, widgets):
    """While the worker is in the middle of the attribution, the GUI thread processes events.

    At its first progress report the worker waits until a GUI timer has fired three more
    times: if the work blocked the event loop (or ran on the GUI thread), it would never go on.
    """
    import threading

    from qtpy.QtCore import QTimer

    viewer, _scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets, method="integrated_gradients")
    widget.param_widgets["n_steps"].setValue(64)
    ticks: list[int] = []  # at each tick: how many progress reports the GUI has received
    handshake: dict[str, object] = {}
    turned = threading.Event()

    def tick() -> None:
        ticks.append(len(widget.progress_seen))
        if "ticks_at_ask" in handshake and len(ticks) >= handshake["ticks_at_ask"] + 3:
            turned.set()

    original = widget.jobs.bridge.reporter

    def reporter(token):
        report = original(token)

        def waiting_report(done, total):  # in the worker thread
            report(done, total)
            if "ticks_at_ask" not in handshake:
                handshake["ticks_at_ask"] = len(ticks)
                handshake["turned"] = turned.wait(timeout=PATIENT_MS / 1000)
                handshake["worker_thread"] = threading.get_ident()

        return waiting_report

    widget.jobs.bridge.reporter = reporter
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    timer.start()
    widget.run()
    _wait_idle(qtbot, widget, timeout=PATIENT_MS)
    timer.stop()
    assert handshake.get("turned") is True, "the event loop stood still while the worker waited"
    assert handshake["worker_thread"] != threading.get_ident()  # the model ran off the GUI thread
    result = widget.last_result
    assert result is not None and result.method == "integrated_gradients"
    # progress reached the GUI while the run went on, not all at the end
    total_reports = len(widget.progress_seen)
    assert total_reports >= 3
    assert any(0 < n < total_reports for n in ticks)
    done = [d for d, _t in widget.progress_seen]
    assert done == sorted(done) and done[-1] == widget.progress_seen[-1][1]
    assert any(ly.metadata.get("kind") == "heatmap" for ly in viewer.layers)


def test_overlay_layers_can_be_toggled_moved_and_deleted(viewer_with_sample, qtbot, widgets):
    viewer, scan, mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets)
    widget.run()
    _wait_idle(qtbot, widget)
    group = [ly for ly in viewer.layers if ly.metadata.get("group")]
    for layer in group:
        layer.visible = not layer.visible
    qtbot.wait(100)
    # back before deleting: napari 0.9 / vispy under software OpenGL crash (segfault in
    # glDrawArrays) when a layer is removed while another is hidden and a layer is added next,
    # with napari's own layers alone (upstream; see napari#8471, #8122)
    for layer in group:
        layer.visible = not layer.visible
    viewer.layers.move(viewer.layers.index(group[0]), 0)
    viewer.layers.remove(group[-1])
    viewer.layers.remove(mask)
    widget.percent.setValue(7.5)  # the remaining contour (if any) follows
    assert widget.scan.currentText() == scan.name
    # a second method, then compare side by side, then back
    widget.method.setCurrentIndex(widget.method.findData("saliency"))
    widget.run()
    _wait_idle(qtbot, widget)
    heatmaps = [ly for ly in viewer.layers if ly.metadata.get("kind") == "heatmap"]
    assert len(heatmaps) == 2
    # one scale for both (values stay exact: data x scale is the map), then each its own again
    products = [np.asarray(h.data) * h.metadata["scale"] for h in heatmaps]
    widget.shared.setChecked(True)
    assert heatmaps[0].metadata["scale"] == heatmaps[1].metadata["scale"]
    for h, product in zip(heatmaps, products, strict=True):
        np.testing.assert_allclose(np.asarray(h.data) * h.metadata["scale"], product, rtol=1e-5, atol=1e-9)
    widget.shared.setChecked(False)
    assert heatmaps[0].metadata["scale"] != heatmaps[1].metadata["scale"]
    widget.blending.setCurrentText("additive")
    assert all(h.blending == "additive" for h in heatmaps)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari 0.9 moved it
    widget.compare_button.setChecked(True)
    assert grid.enabled and grid.stride == 2
    widget.compare_button.setChecked(False)
    assert not grid.enabled
    assert not [ly for ly in viewer.layers if ly.metadata.get("kind") == "compare-anatomy"]
    for layer in [ly for ly in viewer.layers if ly.metadata.get("group")]:
        viewer.layers.remove(layer)
    viewer.layers.remove(scan)
    assert widget.scan.count() == 0
    widget.run()  # nothing to explain: a message, no crash
    assert "Error" in widget.status.text()


def test_prototype_panel_lists_prototypes_and_jumps_to_a_peak(viewer_with_sample, qtbot, widgets):
    from napari_mlmi_interp._widgets import PrototypeWidget

    viewer, scan, _mask = viewer_with_sample
    widget = PrototypeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Prototypes")
    assert widget.model.currentText() == "lesion-protonet"
    widget.run()
    qtbot.waitUntil(lambda: widget.report is not None and not widget.busy, timeout=PATIENT_MS)
    report = widget.report
    assert widget.list.count() == len(report.matches) == 5
    assert all(np.isfinite(m.similarity) and np.isfinite(m.contribution) for m in report.matches)
    contributions = [m.contribution for m in report.matches]
    assert contributions == sorted(contributions, reverse=True)
    assert all(m.patches is not None and m.patches.shape[0] == 3 for m in report.matches)
    row = 1
    match = report.matches[row]
    item = widget.list.item(row)
    rect = widget.list.visualItemRect(item)
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.list.viewport(), Qt.LeftButton, pos=rect.center())
    layer = viewer.layers[f"{scan.name} · prototype {match.index} similarity"]
    np.testing.assert_allclose(layer.affine.affine_matrix, scan.affine.affine_matrix)
    # the current slice is the peak's: the point is the peak in every axis
    np.testing.assert_allclose(np.asarray(viewer.dims.point), match.peak_lps, atol=1.0)


def test_reference_panel_for_a_model_without_prototypes(viewer_with_sample, qtbot, tmp_path):
    from napari_mlmi_interp._widgets import PrototypeWidget
    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.synthetic import make_subject, split_seeds

    for i, seed in enumerate(split_seeds("test", 3)):
        save(make_subject(seed).scan, tmp_path / f"ref{i}.nii.gz")
    viewer, _scan, _mask = viewer_with_sample
    widget = PrototypeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Prototypes")
    widget.model.setCurrentIndex(widget.model.findText("lesion-classifier"))
    widget.run()  # no library chosen yet: a message, nothing runs
    assert "reference library" in widget.status.text() and not widget.busy
    widget.library.setText(str(tmp_path))
    widget.top.setValue(3)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy and widget.list.count() == 3, timeout=PATIENT_MS)
    assert all(np.isfinite(m.similarity) for m in widget.references)
    n = len(viewer.layers)
    opened = []
    widget.reference_opened.connect(opened.append)
    widget.open_reference(0)  # read off the GUI thread
    qtbot.waitUntil(lambda: not widget.busy and bool(opened), timeout=PATIENT_MS)
    layer = opened[0]
    assert layer is viewer.layers[-1]
    assert len(viewer.layers) == n + 1 and layer.name.startswith("reference · ")


def test_segmentation_target_and_roi_together_in_the_panel(viewer_with_sample, qtbot, widgets):
    """Target class and ROI set together: a Labels layer (one of its labels), or the model's own
    segmentation of a class; the map is the one explain() gives for the same request."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.overlays import volume_of_layer

    viewer, scan, mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets, model="lesion-segmenter", method="saliency")
    assert widget.target.currentData() == "lesion" and widget.roi.isEnabled()
    widget.roi.setCurrentIndex(widget.roi.findData(f"layer:{mask.name}"))
    widget.roi_label.setText("LESION")  # a class name, matched as typed; its voxels are the ROI
    widget.run()
    _wait_idle(qtbot, widget)
    result = widget.last_result
    assert result.target["name"] == "lesion" and result.target["roi"] == "given mask"
    volume = volume_of_layer(scan)
    expected = explain(
        volume,
        resolve_model("lesion-segmenter"),
        "saliency",
        target="lesion",
        roi=volume_of_layer(mask).array == 1,
    )
    np.testing.assert_allclose(result.native.array, expected.native.array, rtol=1e-5, atol=1e-8)
    assert result.prediction.computed and "mL" in widget.status.text()  # from saliency's own pass
    # the model's own segmentation of a class as the ROI makes that class the target (as
    # --roi-label does), whatever was picked before
    widget.target.setCurrentIndex(widget.target.findData("background"))
    widget.roi.setCurrentIndex(widget.roi.findData("class:lesion"))
    assert widget.target.currentData() == "lesion"
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.last_result.target["roi"] == "model prediction"
    # a label the layer does not hold: one message, no run
    widget.roi.setCurrentIndex(widget.roi.findData(f"layer:{mask.name}"))
    widget.roi_label.setText("7")
    widget.run()
    assert "no voxel of the label map holds label 7" in widget.status.text() and not widget.busy


def test_choosing_coarse_to_fine_says_how_far_it_is_from_the_exact_map(viewer_with_sample, widgets):
    from napari_mlmi_interp.explain.methods.occlusion import COARSE_TO_FINE_FIDELITY

    viewer, _scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets, method="occlusion")
    combo = widget.param_widgets["strategy"]
    assert combo.currentText() == "auto"
    combo.setCurrentText("coarse_to_fine")
    text = widget.status.text()
    assert "approximates the exact occlusion map" in text
    for measured in COARSE_TO_FINE_FIDELITY:
        assert f"Spearman ρ {measured['spearman']:.2f}" in text and f"Dice {measured['dice_top']:.2f}" in text
    combo.setCurrentText("incremental")
    assert "exact" in widget.status.text() and "Spearman" not in widget.status.text()
    index = combo.findText("coarse_to_fine")  # the same line as the choice's tooltip
    assert "Spearman" in combo.itemData(index, Qt.ItemDataRole.ToolTipRole)
