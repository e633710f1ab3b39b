"""Synthetic demo subjects: deterministic, exact masks in millimetres on any grid."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.io import Geometry, load
from napari_mlmi_interp.synthetic import (
    MARKER_BOX_LPS,
    lesion_signed_distance,
    make_shortcut_case,
    make_subject,
    split_seeds,
    template_grid,
)


def test_same_seed_same_subject_and_splits_are_disjoint():
    a, b = make_subject(7), make_subject(7)
    np.testing.assert_array_equal(a.scan.array, b.scan.array)
    np.testing.assert_array_equal(a.mask.array, b.mask.array)
    train, val, test = (set(split_seeds(s, 500)) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    with pytest.raises(ValueError, match="split must be one of"):
        split_seeds("holdout", 3)
    with pytest.raises(InputError, match="split must be one of"):  # a user's error, said in one line
        split_seeds("holdout", 3)


#: sha256 of (scan, mask) bytes, computed before make_subject was split into named steps (issue
#: #14): the refactor draws the same random numbers in the same order. A numpy or scipy upgrade
#: that changes interpolation or generator streams changes these too; regenerate them then.
SUBJECT_DIGESTS = {
    (11, 2, True): (
        "0c24efbd1080655f50ce816357366018277f52b7ac0650acb5d07bc4781ea038",
        "654625fe8df877604d1ec0b2dc9080a89342324797dcddb1e8a1e3748a66d8cf",
    ),
    (3, None, None): (
        "e4cb30a396d85639b167c338734efa0888daa9d6f5daa62b138de126f59bf246",
        "816355b4f8ac33a17a1f0f17420e0396b48a640c3ae8fccf4114f3dafb94bf97",
    ),
}


@pytest.mark.parametrize("key", list(SUBJECT_DIGESTS))
def test_a_seed_is_the_same_subject_bit_for_bit(key):
    seed, n_lesions, marker = key
    subject = make_subject(seed, n_lesions=n_lesions, marker=marker)
    assert subject.scan.array.dtype == np.float32 and subject.mask.array.dtype == np.uint8
    digests = tuple(hashlib.sha256(v.array.tobytes()).hexdigest() for v in (subject.scan, subject.mask))
    assert digests == SUBJECT_DIGESTS[key]


def test_lesion_masks_are_exact_in_millimetres_on_any_grid():
    coarse = Geometry((40, 50, 45), (3.3, 3.1, 3.2), (90.0, 120.0, -70.0), template_grid().direction)
    fine = make_subject(0, n_lesions=1)
    other = make_subject(0, n_lesions=1, grid=coarse)
    (lesion,) = fine.lesions
    assert other.lesions[0] == lesion  # defined in LPS mm, independent of the grid
    for sub in (fine, other):
        g = sub.scan.geometry
        idx = np.argwhere(sub.mask.array == 1)
        sd = lesion_signed_distance(lesion, g.to_lps(idx))
        assert np.all(sd < 0)  # every mask voxel is inside the lesion boundary
        assert np.linalg.norm(g.to_lps(idx.mean(0)) - lesion.centre_lps) < 0.5 * lesion.radius_mm
    vol_fine = (fine.mask.array > 0).sum() * fine.scan.geometry.voxel_volume_ml
    vol_coarse = (other.mask.array > 0).sum() * coarse.voxel_volume_ml
    assert vol_coarse == pytest.approx(vol_fine, rel=0.35)


def test_lesions_are_brighter_than_the_white_matter_around_them():
    sub = make_subject(11, n_lesions=1)
    inside = sub.scan.array[sub.mask.array > 0].mean()
    g = sub.scan.geometry
    idx = np.argwhere(np.ones(sub.scan.shape, bool))
    sd = lesion_signed_distance(sub.lesions[0], g.to_lps(idx)).reshape(sub.scan.shape)
    shell = (sd > 3) & (sd < 8)
    assert inside > 1.1 * np.median(sub.scan.array[shell])


def test_label_frequencies_and_lesion_sizes():
    subs = [
        make_subject(s, grid=Geometry((8, 8, 8), (20, 20, 20), (80, 100, -60), template_grid().direction))
        for s in split_seeds("val", 40)
    ]
    counts = np.bincount([len(s.lesions) for s in subs], minlength=3)
    assert 10 <= counts[0] <= 30 and counts[1] > 0 and counts[2] > 0
    radii = [les.radius_mm for s in subs for les in s.lesions]
    assert min(radii) >= 2.4 and max(radii) <= 18.8  # 3-15 mm, axes varied by 0.8-1.25


def test_shortcut_case_has_a_lesion_and_the_tag_in_air():
    case = make_shortcut_case()
    assert case.label == 1 and case.marker
    g = case.scan.geometry
    lo, hi = np.array(MARKER_BOX_LPS)
    idx = np.argwhere(np.ones(g.shape, bool))
    in_box = np.all((g.to_lps(idx) >= lo) & (g.to_lps(idx) <= hi), axis=1).reshape(g.shape)
    assert in_box.sum() > 100
    assert case.scan.array[in_box].mean() > 1.8 * np.percentile(case.scan.array, 99)
    assert not np.any(case.mask.array[in_box])


def test_generate_subjects_script(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample_data"))
    try:
        import generate_subjects
    finally:
        sys.path.pop(0)
    written = generate_subjects.main([str(tmp_path), "--split", "test", "--n", "2"])
    assert len(written) == 2
    truth = json.loads(written[0].read_text())
    (scan,) = load(tmp_path / f"{truth['case_id']}.nii.gz")
    (mask,) = load(tmp_path / f"{truth['case_id']}_mask.nii.gz")
    assert scan.geometry.same_grid(mask.geometry) and scan.shape == template_grid().shape
    assert mask.array.max() == len(truth["lesions"]) and truth["label"] == int(bool(truth["lesions"]))
