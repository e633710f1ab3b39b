"""Real scanner series against independent reference NIfTIs, compared in world millimetres."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.io import load

from .conftest import assert_same_world

DICOM2NIFTI = [
    ("generic/anatomical/001", "generic/anatomical/001"),
    ("generic/anatomical/002_non_isotropic", "generic/anatomical/002_non_isotropic"),
    ("ge/anatomical/001", "ge/anatomical/001"),
    ("siemens/anatomical/001", "siemens/anatomical/001"),
    # the same series in five transfer syntaxes, one ground truth
    ("generic/compressed/001", "generic/compressed/001"),
    ("generic/compressed_jpeg/001", "generic/compressed/001"),
    ("generic/compressed_j2k/001", "generic/compressed/001"),
    ("generic/compressed_jpegls/001", "generic/compressed/001"),
    ("generic/compressed_rle/001", "generic/compressed/001"),
]


def test_pdt2_splits_echoes_with_spacing_from_positions(shared_dicom):
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    volumes = load(folder)
    assert len(volumes) == 2
    assert [v.metadata["EchoNumber"] for v in volumes] == [1, 2]
    for v in volumes:
        assert v.shape == (35, 64, 64)
        assert v.spacing[0] == pytest.approx(2.34, abs=1e-4)  # not SliceThickness (1.8)
        assert v.spacing[1:] == pytest.approx((1.796875, 1.796875))
        assert v.geometry.is_oblique()
        assert v.geometry.acquisition_plane() == "sagittal"
        assert "echo" in v.name
    # distinct images, not one echo twice
    assert not np.array_equal(volumes[0].array, volumes[1].array)


@pytest.mark.parametrize("echo", [1, 2])
def test_pdt2_matches_reference_in_world_space(shared_dicom, echo):
    volumes = load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11")
    ref = shared_dicom / "dcm_qa_pdt2" / "Ref" / f"Siemens_pd+t2_tse_sag_ISO_1.8mm_3_e{echo}.nii"
    assert_same_world(volumes[echo - 1], ref)


@pytest.mark.parametrize(("series", "truth"), DICOM2NIFTI, ids=[s for s, _ in DICOM2NIFTI])
def test_dicom2nifti_series_match_ground_truth(shared_dicom, series, truth):
    base = shared_dicom / "dicom2nifti"
    (volume,) = load(base / series)
    # 002 stores a rescale slope: values are floats, compare to float32 precision
    rtol = 1e-6 if volume.array.dtype.kind == "f" else 0.0
    assert_same_world(volume, base / f"{truth}_ground_truth.nii.gz", value_rtol=rtol)


def test_non_isotropic_spacing_per_axis(shared_dicom):
    (v,) = load(shared_dicom / "dicom2nifti" / "generic" / "anatomical" / "002_non_isotropic")
    assert v.shape == (4, 28, 64)
    assert v.spacing[1:] == pytest.approx((4.0, 6.39995861053464))
    assert v.spacing[0] == pytest.approx(0.5, abs=1e-4)
    assert v.array.dtype == np.float32  # RescaleSlope 0.00103 applied


def test_opening_one_file_reads_its_folder(shared_dicom):
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    assert len(load(folder / "0001.dcm")) == 2


def test_compressed_series_decode_to_identical_voxels(shared_dicom):
    base = shared_dicom / "dicom2nifti" / "generic"
    arrays = [
        load(base / f"{name}/001")[0].array
        for name in ("compressed", "compressed_jpeg", "compressed_j2k", "compressed_jpegls", "compressed_rle")
    ]
    for a in arrays[1:]:
        np.testing.assert_array_equal(a, arrays[0])


def test_dicom_and_its_nifti_conversion_land_at_the_same_world_positions(shared_dicom, tmp_path):
    from napari_mlmi_interp.io import save

    for v in load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"):
        path = save(v, tmp_path / f"{v.metadata['EchoNumber']}.nii.gz")
        (again,) = load(path)
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in v.shape], indexing="ij")).reshape(3, -1).T
        assert np.abs(again.geometry.to_lps(corners) - v.geometry.to_lps(corners)).max() < 1e-3
        np.testing.assert_array_equal(again.array, v.array)
