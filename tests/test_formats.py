"""NIfTI / MHA / NRRD: round trips keep voxels and index_to_lps; broken files give a sentence."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from napari_mlmi_interp.io import Geometry, LoadError, Volume, load, save


def _oblique_volume(dtype=np.int16) -> Volume:
    a, b = np.radians(23.0), np.radians(-11.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    direction = rz @ rx @ np.diag([1.0, -1.0, 1.0])  # includes a reflection, as DICOM stacks do
    geom = Geometry((5, 6, 7), (2.34, 0.8, 0.65), (12.5, -33.25, 71.0), direction)
    rng = np.random.default_rng(1)
    return Volume(rng.integers(-1000, 3000, size=(5, 6, 7)).astype(dtype), geom, name="oblique")


# NIfTI stores the affine as float32: "exact" means to float32 precision (~1e-5 mm here)
TOLERANCE = {".nii.gz": 1e-4, ".nii": 1e-4, ".mha": 1e-9, ".nrrd": 1e-9}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix, dtype):
    vol = _oblique_volume(dtype if dtype != np.uint8 else np.int16)
    if dtype == np.uint8:
        vol = vol.with_array((vol.array % 200).astype(np.uint8))
    path = save(vol, tmp_path / f"v{suffix}")
    (again,) = load(path)
    np.testing.assert_array_equal(again.array, vol.array)
    assert again.array.dtype == vol.array.dtype
    np.testing.assert_allclose(again.index_to_lps, vol.index_to_lps, atol=TOLERANCE[suffix], rtol=0)
    assert again.name == "v"


def test_mha_round_trip_is_bit_exact(tmp_path):
    vol = _oblique_volume()
    (again,) = load(save(vol, tmp_path / "v.mha"))
    np.testing.assert_allclose(again.index_to_lps, vol.index_to_lps, atol=1e-12, rtol=0)


def test_nifti_written_by_us_reads_the_same_in_nibabel(tmp_path):
    import nibabel as nib

    vol = _oblique_volume()
    path = save(vol, tmp_path / "v.nii.gz")
    img = nib.load(str(path))
    lps = np.diag([-1.0, -1, 1, 1]) @ img.affine  # nibabel: (i, j, k) = (x, y, z)
    ijk = np.array([6, 5, 4])  # nibabel's (x, y, z) index of our voxel (z, y, x) = (4, 5, 6)
    assert np.allclose(lps[:3, :3] @ ijk + lps[:3, 3], vol.geometry.to_lps([4, 5, 6]), atol=1e-4)
    assert np.asanyarray(img.dataobj)[6, 5, 4] == vol.array[4, 5, 6]


def test_corrupted_nifti_header(tmp_path):
    vol = _oblique_volume()
    path = save(vol, tmp_path / "bad.nii")
    raw = bytearray(path.read_bytes())
    raw[0:4] = (12345).to_bytes(4, "little")  # sizeof_hdr must be 348
    raw[40:56] = b"\xff" * 16  # dim[] garbage
    path.write_bytes(bytes(raw))
    with pytest.raises(LoadError, match=r"bad\.nii: not a readable NIfTI file: its header is invalid"):
        load(path)


def test_corrupted_gzip_nifti(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:60])
    with pytest.raises(LoadError, match=r"bad\.nii\.gz: not a readable NIfTI file"):
        load(path)


def test_empty_nifti(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.touch()
    with pytest.raises(LoadError, match=r"empty\.nii\.gz: the file is empty \(0 bytes\), not a NIfTI image"):
        load(path)


def test_header_claiming_an_enormous_volume_is_refused_before_allocation(tmp_path):
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))  # int16 dims: 108 TB of float32
    hdr.set_data_dtype(np.float32)
    path = tmp_path / "huge.nii"
    with open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4)
    with pytest.raises(LoadError, match=r"huge\.nii: the volume needs \d+.* GiB but only"):
        load(path)


def test_folder_of_nifti_files(tmp_path):
    vol = _oblique_volume()
    save(vol, tmp_path / "a.nii.gz")
    save(vol, tmp_path / "b.mha")
    assert [v.name for v in load(tmp_path)] == ["a", "b"]


def test_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"output must end in one of \.nii\.gz"):
        save(_oblique_volume(), tmp_path / "v.png")


def test_content_case_id_is_a_pseudonym(tmp_path):
    vol = _oblique_volume()
    (a,) = load(save(vol, tmp_path / "a.nii.gz"))
    (b,) = load(save(vol, tmp_path / "b.nii.gz"))
    assert a.case_id == b.case_id and a.case_id.startswith("case-")
