"""The Explain and prototype panels in a shown napari viewer (under Xvfb)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _explain_widget(viewer, widgets, model="lesion-classifier", method="gradcam"):
    from napari_mlmi_interp._widgets import ExplainWidget

    widget = ExplainWidget(viewer)
    widgets.append(widget)
    widget.budget.setValue(256)
    viewer.window.add_dock_widget(widget, name="Explain")
    widget.model.setCurrentIndex(widget.model.findData(model))
    widget.method.setCurrentIndex(widget.method.findData(method))
    widget.target.setCurrentIndex(widget.target.findData("lesion"))
    return widget


def _wait_idle(qtbot, widget, timeout=120_000):
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
    assert heat.name == f"{scan.name} · Grad-CAM · lesion"
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
    widget.param_widgets["n_steps"].setValue(4000)
    n_layers = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: len(widget.progress_seen) >= 2, timeout=60_000)
    widget.cancel_button.click()
    _wait_idle(qtbot, widget, timeout=10_000)
    done = [d for d, _t in widget.progress_seen]
    assert done == sorted(done)
    assert done[-1] < 4000
    assert len(viewer.layers) == n_layers
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled()


def test_gui_stays_responsive_during_integrated_gradients(viewer_with_sample, qtbot, widgets):
    from qtpy.QtCore import QTimer

    viewer, _scan, _mask = viewer_with_sample
    widget = _explain_widget(viewer, widgets, method="integrated_gradients")
    widget.param_widgets["n_steps"].setValue(64)
    ticks: list[float] = []
    reports: list[float] = []
    widget._bridge.progress.connect(lambda d, t: reports.append(time.perf_counter()))
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    widget.run()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    ended = time.perf_counter()
    _wait_idle(qtbot, widget)
    timer.stop()
    assert widget.last_result is not None and widget.last_result.method == "integrated_gradients"
    # during the run: from the first progress report to the worker's end (the model's work)
    during = np.array([t for t in ticks if reports[0] <= t <= ended])
    assert len(during) > 10 and len(reports) >= 3
    gaps = np.diff(np.r_[reports[0], during, ended])
    assert gaps.max() < 0.25, f"the GUI stalled for {gaps.max() * 1000:.0f} ms during the run"
    # before and after (software OpenGL repaints, adding the layers): still never frozen
    assert np.diff(ticks).max() < 1.0


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
    widget.compare_button.setChecked(True)
    assert viewer.grid.enabled and viewer.grid.stride == 2
    widget.compare_button.setChecked(False)
    assert not viewer.grid.enabled
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
    qtbot.waitUntil(lambda: widget.report is not None and widget._worker is None, timeout=60_000)
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
    assert "reference library" in widget.status.text() and widget._worker is None
    widget.library.setText(str(tmp_path))
    widget.top.setValue(3)
    widget.run()
    qtbot.waitUntil(lambda: widget._worker is None and widget.list.count() == 3, timeout=60_000)
    assert all(np.isfinite(m.similarity) for m in widget.references)
    n = len(viewer.layers)
    layer = widget.open_reference(0)
    assert len(viewer.layers) == n + 1 and layer.name.startswith("reference · ")
