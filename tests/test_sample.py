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


def test_real_t1_ships_conformed_and_cli_writes_it_byte_for_byte(tmp_path, capsys):
    import json

    import nibabel as nib

    from napari_mlmi_interp.cli import main
    from napari_mlmi_interp.sample import load_real_t1

    t1 = load_real_t1()
    g = t1.geometry
    assert g.shape == (256, 256, 256) and g.spacing == (1.0, 1.0, 1.0) and t1.array.dtype == np.uint8
    assert main(["sample", str(tmp_path), "--real", "--json"]) == 0
    path = json.loads(capsys.readouterr().out)["scan"]
    img = nib.load(path)
    assert nib.aff2axcodes(img.affine) == ("L", "I", "A")  # FreeSurfer-conformed, read independently
    # our geometry agrees with nibabel's affine (RAS) at every corner, in LPS mm
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    for ijk in [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (17, 200, 93)]:
        ras = img.affine[:3, :3] @ np.array(ijk, float) + img.affine[:3, 3]
        np.testing.assert_allclose(g.to_lps(np.array(ijk[::-1], float)), ras_to_lps @ ras, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), t1.array)
    (again,) = load(path)
    np.testing.assert_array_equal(again.array, t1.array)


def test_real_t1_sample_layer_is_an_image_in_lps_mm():
    from napari_mlmi_interp._sample_data import real_t1

    (layer,) = real_t1()
    data, kwargs, kind = layer
    assert kind == "image" and data.shape == (256, 256, 256)
    assert kwargs["metadata"]["volume"].name == "real T1 (brainchop)"


def test_sample_refuses_two_kinds_at_once(tmp_path, capsys):
    from napari_mlmi_interp.cli import main

    assert main(["sample", str(tmp_path), "--real", "--shortcut"]) == 2
    assert "not both" in capsys.readouterr().err
