from __future__ import annotations

import numpy as np

from napari_mlmi_interp.io import load
from napari_mlmi_interp.sample import LESION_CENTRE_LPS, make_sample, write_sample


def test_sample_is_real_anatomy_in_mni_geometry():
    s = make_sample()
    g = s.scan.geometry
    assert g.shape == (94, 116, 98) and g.spacing == (2.0, 2.0, 2.0)
    assert g.acquisition_plane() == "axial"
    # MNI origin (RAS -98, -134, -72) + half a 2 mm block, in LPS
    assert np.allclose(g.origin, (97.5, 133.5, -71.5))
    # white matter brighter than grey matter (T1), background dark
    t = s.tissue.array
    wm, gm = np.median(s.scan.array[t == 2]), np.median(s.scan.array[t == 1])
    assert wm > 1.2 * gm > 0 and np.median(s.scan.array[t == 0]) < 0.3 * gm


def test_lesion_mask_sits_at_the_documented_place_in_white_matter():
    s = make_sample()
    g = s.scan.geometry
    mask = s.mask.array
    volume_ml = mask.sum() * g.voxel_volume_ml
    assert 0.8 < volume_ml < 3.0
    centroid = g.to_lps(np.argwhere(mask).mean(axis=0))
    assert np.linalg.norm(centroid - LESION_CENTRE_LPS) < 2.0
    assert LESION_CENTRE_LPS[0] < 0  # L < 0: the patient's right hemisphere
    centre_idx = tuple(np.round(g.to_index(LESION_CENTRE_LPS)).astype(int))
    assert s.tissue.array[centre_idx] == 2
    # the lesion is visible: brighter than the white matter around it
    ring = (s.tissue.array == 2) & (mask == 0)
    assert s.scan.array[mask > 0].mean() > 1.15 * np.median(s.scan.array[ring])


def test_sample_is_deterministic_and_seeded():
    a, b, c = make_sample(0), make_sample(0), make_sample(1)
    np.testing.assert_array_equal(a.scan.array, b.scan.array)
    assert not np.array_equal(a.mask.array, c.mask.array)


def test_write_sample_round_trips(tmp_path):
    paths = write_sample(tmp_path)
    (scan,) = load(paths["scan"])
    (mask,) = load(paths["mask"])
    s = make_sample()
    np.testing.assert_array_equal(scan.array, s.scan.array)
    np.testing.assert_array_equal(mask.array, s.mask.array)
    assert np.allclose(mask.index_to_lps, s.scan.index_to_lps, atol=1e-4)
