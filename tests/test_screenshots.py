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


def test_demo_command_writes_screenshot_and_results(tmp_path):
    from napari_mlmi_interp.cli import main

    assert main(["demo", "--out", str(tmp_path), "--screenshot", str(tmp_path / "demo.png")]) == 0
    results = json.loads((tmp_path / "demo_results.json").read_text())
    assert results["screenshot"] == str(tmp_path / "demo.png")
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "demo.png"))[..., :3]
    assert pixels.shape[0] > 500 and pixels.std() > 20  # a rendered window, not a blank image
    assert 0.8 < results["lesion_volume_ml"] < 3.0


def test_view_command_screenshots_a_real_series(shared_dicom, tmp_path):
    from PIL import Image

    from napari_mlmi_interp.cli import main

    out = tmp_path / "view.png"
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    assert main(["view", str(folder), "--plane", "axial", "--screenshot", str(out)]) == 0
    pixels = np.asarray(Image.open(out))[..., :3]
    assert pixels.std() > 20
