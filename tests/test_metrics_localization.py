"""Localization metrics: known answers on a small anisotropic grid, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.metrics import (
    peak_index,
    peak_to_roi_mm,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roi_auroc,
    topk_dice,
    topk_iou,
)

SPACING = (3.0, 1.0, 0.5)  # mm along (z, y, x): anisotropic


@pytest.fixture
def case():
    """A 4 x 5 x 6 grid (120 voxels); ROI = the 2 x 2 x 2 block z 1-2, y 1-2, x 1-2."""
    roi = np.zeros((4, 5, 6), bool)
    roi[1:3, 1:3, 1:3] = True
    a = np.zeros((4, 5, 6))
    a[1, 1, 1] = 4.0  # inside
    a[2, 2, 2] = 2.0  # inside
    a[3, 4, 5] = 3.0  # outside
    a[0, 0, 0] = -5.0  # negative evidence, outside
    return a, roi


def test_mass_rank_and_auroc_by_hand(case):
    a, roi = case
    # positive mass 4 + 2 + 3 = 9, of which 6 inside
    assert relevance_mass_accuracy(a, roi) == pytest.approx(6 / 9)
    # |ROI| = 8. With every ROI voxel raised by 1 they all outrank every voxel outside but the
    # 3 (tie-free): the top 8 are the 5, the 3 (outside) and six 1s -> 7 of 8 inside
    b = a.copy()
    b[roi] += 1.0
    assert relevance_rank_accuracy(b, roi) == pytest.approx(7 / 8)
    # AUROC: 8 positives, 112 negatives. Positives: 5, 3, and six 1s; negatives: one 3,
    # one -5, 110 zeros. Pairs won: 5 beats all 112; 3 beats 111 and ties 1 (0.5);
    # each 1 beats 111 (all but the 3): (112 + 111.5 + 6 * 111) / (8 * 112)
    assert roi_auroc(b, roi) == pytest.approx((112 + 111.5 + 6 * 111) / (8 * 112))


def test_pointing_game_and_peak_distance_in_mm(case):
    a, roi = case
    assert peak_index(a) == (1, 1, 1)
    assert pointing_game(a, roi, SPACING) and peak_to_roi_mm(a, roi, SPACING) == 0.0
    c = a.copy()
    c[3, 4, 5] = 10.0  # the peak moves outside: nearest ROI voxel is (2, 2, 2)
    # offsets 1, 2, 3 voxels -> 3 mm, 2 mm, 1.5 mm -> sqrt(9 + 4 + 2.25)
    expected = np.sqrt(9 + 4 + 2.25)
    assert peak_to_roi_mm(c, roi, SPACING) == pytest.approx(expected)
    assert not pointing_game(c, roi, SPACING)
    assert pointing_game(c, roi, SPACING, tolerance_mm=4.0)
    # the same offsets on an isotropic 1 mm grid would be sqrt(14): spacing matters
    assert peak_to_roi_mm(c, roi, (1, 1, 1)) == pytest.approx(np.sqrt(14))


def test_topk_dice_and_iou(case):
    a, roi = case
    # top 5 % of 120 voxels = 6 voxels, but only 3 are positive: region {4, 2 inside; 3 out}
    assert topk_dice(a, roi, 5.0) == pytest.approx(2 * 2 / (3 + 8))
    assert topk_iou(a, roi, 5.0) == pytest.approx(2 / (3 + 8 - 2))


def test_errors(case):
    a, roi = case
    with pytest.raises(ValueError, match="same grid"):
        relevance_mass_accuracy(a, roi[:, :, :5])
    with pytest.raises(ValueError, match="ROI is empty"):
        topk_dice(a, np.zeros_like(roi))
    assert relevance_mass_accuracy(-np.abs(a), roi) == 0.0  # no positive evidence at all


def test_a_map_on_the_lesion_beats_a_map_on_the_skull_on_every_localization_metric():
    from napari_mlmi_interp.sample import LESION_CENTRE_LPS, make_sample

    sample = make_sample()
    g = sample.scan.geometry
    roi = sample.mask.array > 0
    idx = np.stack(np.indices(g.shape), -1).astype(float)
    lps = g.to_lps(idx)

    def blob(centre):
        return np.exp(-((lps - np.asarray(centre)) ** 2).sum(-1) / (2 * 8.0**2))

    skull = (LESION_CENTRE_LPS[0] - 45.0, LESION_CENTRE_LPS[1], LESION_CENTRE_LPS[2])  # lateral, on the skull
    good, bad = blob(LESION_CENTRE_LPS), blob(skull)
    sp = g.spacing
    assert pointing_game(good, roi, sp) and not pointing_game(bad, roi, sp)
    assert peak_to_roi_mm(good, roi, sp) < peak_to_roi_mm(bad, roi, sp)
    for metric in (relevance_mass_accuracy, relevance_rank_accuracy, roi_auroc, topk_dice, topk_iou):
        assert metric(good, roi) > metric(bad, roi), metric.__name__
