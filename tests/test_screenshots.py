"""Rendered pixels: the sample lesion appears where radiological convention puts it."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_lesion_is_drawn_on_the_viewers_left_in_the_axial_view(make_napari_viewer):
    from napari_mlmi_interp.overlays import set_radiological_view
    from napari_mlmi_interp.sample import LESION_CENTRE_LPS

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(900, 800)
    scan, mask = viewer.open_sample("napari-mlmi-interp", "brain_lesion")
    assert scan.metadata["volume"].window is not None  # the sample carries its display window
    set_radiological_view(viewer, "axial")
    viewer.dims.point = LESION_CENTRE_LPS
    with_mask = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    mask.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    h, w = without.shape[:2]
    # real pixels: the brain fills the middle of the canvas, the corners are background
    assert without[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20].mean() > 60
    assert without[:10, :10].mean() < 30
    changed = np.abs(with_mask - without).sum(axis=-1) > 30
    ys, xs = np.nonzero(changed)
    assert ys.size > 50, "the lesion mask is not visible"
    # lesion at L = -26 mm is in the patient's right hemisphere: the viewer's left half
    assert xs.mean() < 0.45 * w
    # and it lies in the upper half (anterior up): the lesion is 9 mm anterior of the brain's
    # centre along P, the frontal lobe is at the top of the canvas
    brain_rows = np.nonzero(without.mean(axis=(1, 2)) > 20)[0]
    assert ys.mean() < (brain_rows.min() + brain_rows.max()) / 2


def test_demo_command_writes_screenshots_and_results(tmp_path):
    from PIL import Image

    from napari_mlmi_interp.cli import main

    assert main(["demo", "--out", str(tmp_path), "--screenshot", str(tmp_path / "demo.png")]) == 0
    results = json.loads((tmp_path / "demo_results.json").read_text())
    shots = results["screenshots"]
    assert shots["2d"] == str(tmp_path / "demo.png")
    for path in shots.values():
        pixels = np.asarray(Image.open(path))[..., :3]
        assert pixels.shape[0] > 300 and pixels.std() > 20, path  # rendered, not blank
    assert 0.8 < results["lesion_volume_ml"] < 3.0
    methods = {e["method"]: e for e in results["explanations"]}
    assert set(methods) == {"gradcam", "integrated_gradients"}
    for e in methods.values():
        assert e["prediction"]["predicted"] == "lesion"
        assert e["peak_to_lesion_mm"] <= 5.0, e
    top = results["prototypes"]["top"]
    assert len(top) == 5 and all(np.isfinite(t["similarity"]) for t in top)
    # the sidebar judged Grad-CAM against the lesion mask, with the model evidence
    framework = results["framework"]
    assert framework["explanation"].endswith("Grad-CAM · lesion")
    evidence = framework["evidence"]
    assert evidence["localization"]["pointing_game"] is True
    assert evidence["bands"]["pointing_game"] == "pass"
    assert {"deletion_auc", "insertion_auc", "randomisation_final_rho"} <= set(evidence["model_transparency"])
    assert len(evidence["curves"]["deletion"]["y"]) == 21
    assert (tmp_path / "demo_study.sqlite").is_file()
    # the sidebar's picture: tall (every card), with the band chips' colours in it
    sidebar = np.asarray(Image.open(shots["sidebar"]))[..., :3].astype(int)
    assert sidebar.shape[0] > 1500
    green = (np.abs(sidebar - [46, 125, 50]).sum(axis=-1) < 30).sum()
    red = (np.abs(sidebar - [198, 40, 40]).sum(axis=-1) < 30).sum()
    assert green > 500 and red > 100  # pass and fail chips are drawn


def test_view_command_screenshots_a_real_series(shared_dicom, tmp_path):
    from PIL import Image

    from napari_mlmi_interp.cli import main

    out = tmp_path / "view.png"
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    assert main(["view", str(folder), "--plane", "axial", "--screenshot", str(out)]) == 0
    pixels = np.asarray(Image.open(out))[..., :3]
    assert pixels.std() > 20


def test_demo_heatmap_lies_over_the_lesion_and_not_elsewhere(make_napari_viewer):
    from napari_mlmi_interp._widgets.demo import build_demo

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    demo = build_demo(viewer)
    gradcam = demo["layers"]["gradcam"]
    heat, contour = gradcam["heatmap"], gradcam["contour"]
    mask = viewer.layers["lesion mask (truth)"]

    def shot():
        return viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)

    heat.visible = contour.visible = False
    anatomy = shot()
    mask.visible = True
    lesion = np.abs(shot() - anatomy).sum(-1) > 30
    mask.visible = False
    heat.visible = True
    coloured = np.abs(shot() - anatomy).sum(-1) > 60
    assert lesion.sum() > 30, "the lesion is not in the view"
    ys, xs = np.nonzero(lesion)
    cy, cx = ys.mean(), xs.mean()
    radius = max(np.ptp(ys), np.ptp(xs)) / 2 + 1
    yy, xx = np.indices(lesion.shape)
    near = (yy - cy) ** 2 + (xx - cx) ** 2 <= (2.5 * radius) ** 2
    brain = anatomy.sum(-1) > 60
    far_brain = brain & ~near
    figures = {
        "lesion_coloured": coloured[lesion].mean(),
        "far_brain_coloured": coloured[far_brain].mean(),
    }
    print(figures)
    # the heatmap covers most of the lesion ...
    assert figures["lesion_coloured"] > 0.6, figures
    # ... and does not dominate elsewhere: over the lesion colour is many times denser than
    # over the brain away from it (beyond 2.5 lesion radii), most of which keeps its grey values
    assert figures["lesion_coloured"] > 5 * figures["far_brain_coloured"], figures
    assert figures["far_brain_coloured"] < 0.15, figures
    # the heatmap's colours are warm (red/yellow) over the lesion
    over = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)[lesion & coloured]
    assert (over[:, 0] > over[:, 2]).mean() > 0.9
