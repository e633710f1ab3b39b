"""``demo --real``: the structure it explains is on the patient's left (in LPS, not by index), and
the scene it builds fills the sidebar's five cards with the model's figures, at the effort that
fits, stated. The real run (the real T1 at 256³, about 9 minutes here) is measured in
docs/real_models.md; here a small segmenter stands in for the real one."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.io import Geometry


def _blobs():
    labels = np.zeros((20, 20, 30), np.uint8)
    labels[8:12, 8:12, 2:6] = 3  # low x index
    labels[8:12, 8:12, 20:27] = 3  # high x index, the larger piece
    labels[8:10, 8:10, 10:11] = 3  # a stray voxel pair, low x index side
    return labels


def test_left_component_is_the_patients_left_in_lps_whatever_the_index_order():
    from napari_mlmi_interp._widgets.demo_real import left_component

    labels = _blobs()
    # an axial stack: array axes (z, y, x) along S, P, L; the patient's left is the high x index
    axial = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # columns: axis -> LPS
    lps = Geometry(labels.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), axial)
    left = left_component(labels, 3, lps)
    assert left.sum() == 4 * 4 * 7 and left[8:12, 8:12, 20:27].all()
    # the x index towards the patient's right (as a RAS-stored NIfTI): the low-index pieces are left
    flipped = axial.copy()
    flipped[:, 2] *= -1
    ras = Geometry(labels.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), flipped)
    left = left_component(labels, 3, ras)
    assert left.sum() == 4 * 4 * 4 and left[8:12, 8:12, 2:6].all()  # the larger of the left pieces
    with pytest.raises(InputError, match="no voxel of label 5"):
        left_component(labels, 5, lps)
    one = np.zeros_like(labels)
    one[8:12, 8:12, 20:27] = 3
    with pytest.raises(InputError, match="no connected piece on the patient's left"):
        left_component(one, 3, lps)  # one piece: it is its own midline


def test_the_real_demo_scene_fills_the_five_cards_with_the_models_figures(
    make_napari_viewer, monkeypatch, tmp_path
):
    from napari_mlmi_interp import sample as sample_module
    from napari_mlmi_interp._widgets import demo_real
    from napari_mlmi_interp.explain.timing import forget_timings
    from napari_mlmi_interp.framework import session
    from napari_mlmi_interp.vocabulary import ELEMENTS

    # the demo segmenter on the sample brain stands in for aparc50 on the real T1; its one lesion
    # is the structure (its "left piece" is the lesion itself), and a 0.06 s limit makes the
    # sidebar choose the smallest effort and say it is over
    sample = sample_module.make_sample()
    monkeypatch.setattr(sample_module, "load_real_t1", lambda: sample.scan)
    monkeypatch.setattr(demo_real, "REAL_MODEL", "lesion-segmenter")
    monkeypatch.setattr(demo_real, "STRUCTURE", "lesion")
    monkeypatch.setattr(demo_real, "left_component", lambda labels, index, geometry: labels == index)
    monkeypatch.setattr(session, "DEFAULT_TIME_LIMIT_MIN", 0.001)
    forget_timings()  # a pass another test timed would price it instead of the map's own time
    viewer = make_napari_viewer()
    demo = demo_real.build_real_demo(viewer, study_path=tmp_path / "study.sqlite", wait=True)
    summary = demo["summary"]
    assert summary["model"] == "lesion-segmenter" and summary["structure"] == "left lesion"
    assert summary["framework"]["goal"]["task"] == "segmentation"
    assert summary["framework"]["goal"]["elements"] == list(ELEMENTS)
    evidence = summary["framework"]["evidence"]
    for element in ELEMENTS:  # five cards, numbers in each
        assert evidence[element], element
    for key in ("deletion_auc", "insertion_auc", "randomisation_final_rho", "prediction_drop"):
        assert evidence["model_transparency"].get(key, evidence["actionability"].get(key)) is not None, key
    assert evidence["actionability"]["tta_volume_sd_ml"] is not None
    settings = evidence["settings"]
    assert settings["effort"] == "brief" and settings["localization_region"] == "the explained ROI"
    # the labels layer (hidden under the map) and the structure, on the scan's grid
    parcellation = viewer.layers["lesion-segmenter parcellation"]
    scan_layer = demo["scan_layer"]
    assert not parcellation.visible and parcellation.data.shape == scan_layer.data.shape
    for layer in (parcellation, demo["roi_layer"], demo["layers"]["heatmap"]):  # the scan's millimetres
        np.testing.assert_allclose(layer.affine.affine_matrix, scan_layer.affine.affine_matrix)
    voxels = int(np.count_nonzero(np.asarray(demo["roi_layer"].data)))
    assert voxels * sample.scan.geometry.voxel_volume_ml == pytest.approx(
        summary["structure_volume_ml"], abs=0.005
    )
    assert isinstance(summary["explanation"]["peak_in_structure"], bool)
    card = demo["sidebar"].cards["localization"]
    texts = [card.grid.itemAt(i).widget().text() for i in range(card.grid.count())]
    assert any("the ROI this map explains" in t for t in texts)  # said on the card itself
    demo["sidebar"].shutdown()
