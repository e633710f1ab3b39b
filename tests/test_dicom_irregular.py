"""Irregular and broken DICOM input: each gives a correct volume or one clear sentence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_mlmi_interp.io import LoadError, LoadWarning, load, load_warnings, output_stem

from .dicom_factory import axial_positions, write_enhanced, write_series


def test_regular_axial_series_geometry_and_values(tmp_path):
    write_series(tmp_path, axial_positions(5, spacing=2.5))
    (v,) = load(tmp_path)
    assert v.shape == (5, 8, 10)
    assert v.spacing == pytest.approx((2.5, 0.8, 0.6))
    assert v.origin == pytest.approx((-10, 20, 30))
    # voxel (k, r, c) was written as 100k + 10r + c and lies at origin + (0.6c, 0.8r, 2.5k)
    assert v.array[3, 4, 5] == 345
    assert np.allclose(v.geometry.to_lps([3, 4, 5]), [-10 + 3.0, 20 + 3.2, 30 + 7.5])


def test_slices_sorted_by_position_not_file_order(tmp_path):
    pos = axial_positions(4)
    write_series(tmp_path, pos[::-1])  # file 0 holds the top slice
    (v,) = load(tmp_path)
    assert v.origin == pytest.approx(pos[0])
    # the bottom slice (written last, k=3) comes first
    assert v.array[0, 0, 0] == 300


def test_missing_slice_is_refused_with_the_gap_in_mm(tmp_path):
    pos = axial_positions(6, spacing=2.5)
    del pos[3]
    write_series(tmp_path, pos)
    with pytest.raises(LoadError, match=r"missing slice: a gap of 5\.00 mm .* spacing is 2\.50 mm") as err:
        load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_irregular_spacing_is_refused_with_numbers(tmp_path):
    write_series(tmp_path, [(0, 0, z) for z in (0.0, 2.0, 4.6, 6.2, 8.0)])
    with pytest.raises(LoadError, match=r"irregular slice spacing: steps .* from 1\.600 to 2\.600 mm"):
        load(tmp_path)


def test_duplicates_at_every_position_split_into_repeats(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.77"
    write_series(tmp_path, axial_positions(4), series_uid=uid, acquisition=1, prefix="a")
    pixels = np.full((4, 8, 10), 7, dtype=np.int16)
    write_series(tmp_path, axial_positions(4), series_uid=uid, acquisition=2, prefix="b", pixels=pixels)
    vols = load(tmp_path)
    assert len(vols) == 2
    assert [v.name.endswith(f"(repeat {i} of 2)") for i, v in enumerate(vols, 1)] == [True, True]
    assert vols[0].array[2, 0, 0] == 200 and np.all(vols[1].array == 7)
    assert all(v.shape == (4, 8, 10) for v in vols)


def test_uneven_duplicates_are_refused(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.78"
    write_series(tmp_path, axial_positions(4), series_uid=uid, prefix="a")
    write_series(tmp_path, axial_positions(1), series_uid=uid, prefix="b")
    with pytest.raises(LoadError, match=r"duplicate slice positions: 1 of 4 positions .* 2 slices at 30\.00"):
        load(tmp_path)


def test_gantry_tilt_is_resampled_to_the_true_positions(tmp_path):
    # CT with 15 degrees of tilt: each 2.5 mm step along S shifts 0.67 mm along P
    step, tilt = 2.5, np.radians(15.0)
    shift = step * np.tan(tilt)
    rows, cols, n = 12, 10, 6
    pixels = np.zeros((n, rows, cols), dtype=np.int16)
    pixels[4, 5, 3] = 1000  # a bright voxel in slice 4, row 5, column 3
    pos = axial_positions(n, spacing=step, shift=(0.0, shift))
    write_series(tmp_path, pos, rows=rows, cols=cols, pixel_spacing=(1.0, 1.0), modality="CT", pixels=pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (v,) = load(tmp_path)
    assert any("gantry tilt of 15.00 degrees" in w for w in v.warnings)
    assert np.allclose(v.direction, np.column_stack([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    # true LPS of the bright voxel: its slice's position + row/col offsets
    true_lps = np.array(pos[4]) + np.array([3 * 1.0, 5 * 1.0, 0.0])
    peak = np.unravel_index(np.argmax(v.array), v.shape)
    assert np.linalg.norm(v.geometry.to_lps(peak) - true_lps) <= 0.5 * max(v.spacing)
    # sub-voxel check: intensity-weighted centre of the resampled blob
    w = np.clip(v.array, 0, None).astype(float)
    centre = (np.argwhere(w > 0) * w[w > 0][:, None]).sum(0) / w.sum()
    assert np.linalg.norm(v.geometry.to_lps(centre) - true_lps) < 0.05


def test_mixed_orientations_split_into_stacks(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.79"
    write_series(tmp_path, axial_positions(3), series_uid=uid, prefix="ax")
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    write_series(
        tmp_path, [(0, y, 0) for y in (0.0, 3.0, 6.0, 9.0)], series_uid=uid, prefix="co", orientation=coronal
    )
    vols = sorted(load(tmp_path), key=lambda v: v.shape[0])
    assert [v.shape[0] for v in vols] == [3, 4]
    assert [v.geometry.acquisition_plane() for v in vols] == ["axial", "coronal"]
    assert "orientation" in vols[0].name and vols[0].name != vols[1].name


def test_folder_with_two_series_loads_both(tmp_path):
    write_series(tmp_path / "a", axial_positions(3), description="T1", series_number=1)
    write_series(tmp_path / "b", axial_positions(4), description="T2", series_number=2)
    vols = load(tmp_path)
    assert [v.name for v in vols] == ["T1", "T2"]
    assert vols[0].case_id != vols[1].case_id


def test_bad_series_beside_a_good_one_is_skipped_with_a_warning(tmp_path):
    write_series(tmp_path / "good", axial_positions(3), description="good", series_number=1)
    pos = axial_positions(5)
    del pos[2]
    write_series(tmp_path / "bad", pos, description="gappy", series_number=2)
    with pytest.warns(LoadWarning, match="'gappy': missing slice"):
        vols = load(tmp_path)
    assert [v.name for v in vols] == ["good"]
    assert any("missing slice" in w for w in vols[0].warnings)


def test_ct_rescale_gives_hounsfield_units_and_window(tmp_path):
    write_series(tmp_path, axial_positions(2), modality="CT", rescale=(1.0, -1024.0), window=(40, 400))
    (v,) = load(tmp_path)
    assert v.units == "HU" and v.modality == "CT"
    assert v.array[1, 2, 3] == 100 + 23 - 1024
    assert v.window == (40.0, 400.0)


def test_fractional_rescale_gives_floats(tmp_path):
    write_series(tmp_path, axial_positions(2), rescale=(0.5, 1.25))
    (v,) = load(tmp_path)
    assert v.array.dtype == np.float32
    assert v.array[1, 2, 3] == pytest.approx(123 * 0.5 + 1.25)


def test_enhanced_multiframe_sorted_by_position_with_frame_rescale(tmp_path):
    pos = [(5.0, -3.0, 10.0 + 1.5 * k) for k in range(5)]
    write_enhanced(tmp_path / "mf.dcm", pos, shuffle=[3, 0, 4, 1, 2], rescale=(2.0, -5.0))
    (v,) = load(tmp_path)
    assert v.shape == (5, 6, 7)
    assert v.spacing == pytest.approx((1.5, 0.9, 0.7))
    assert v.origin == pytest.approx(pos[0])
    # value (100k + 10r + c) * 2 - 5, in position order
    assert v.array[4, 2, 3] == (400 + 23) * 2 - 5
    assert v.array[0, 0, 0] == -5


def test_echo_numbers_split_an_interleaved_series(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.80"
    pos = axial_positions(3)
    write_series(tmp_path, pos, series_uid=uid, echo=1, prefix="e1")
    write_series(tmp_path, pos, series_uid=uid, echo=2, prefix="e2", pixels=np.ones((3, 8, 10)))
    vols = load(tmp_path)
    assert [v.name for v in vols] == ["synthetic (echo 1)", "synthetic (echo 2)"]


# -- broken input: one sentence naming the file and the problem ---------------------------------


def test_empty_folder(tmp_path):
    with pytest.raises(LoadError, match=r"no DICOM images found \(the folder is empty\)"):
        load(tmp_path)


def test_non_dicom_file_named_dcm(tmp_path):
    bad = tmp_path / "scan.dcm"
    bad.write_text("this is a radiology report, not an image\n" * 10)
    with pytest.raises(LoadError, match=r"scan\.dcm: not a DICOM file: no DICOM marker"):
        load(bad)
    with pytest.raises(LoadError, match=r"no DICOM images found \(1 file, none of them DICOM\)"):
        load(tmp_path)


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.touch()
    with pytest.raises(LoadError, match=r"empty\.dcm: not a DICOM file: the file is empty \(0 bytes\)"):
        load(empty)


def test_truncated_dicom_names_the_file(tmp_path):
    (path,) = write_series(tmp_path, axial_positions(1), rows=64, cols=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    with pytest.raises(LoadError, match=r"im0000\.dcm: pixel data cannot be decoded") as err:
        load(tmp_path)
    assert "\n" not in str(err.value)


def test_truncated_header(tmp_path):
    (path,) = write_series(tmp_path, axial_positions(1))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(
        LoadError, match=r"no DICOM images could be read \(im0000\.dcm: (unreadable|holds no image)"
    ):
        load(tmp_path)


def test_missing_path():
    with pytest.raises(LoadError, match="no such file or folder"):
        load("/nonexistent/scan.nii.gz")


# -- warnings once per series, names from series facts -------------------------------------------


def test_folder_note_comes_once_and_series_notes_name_their_series(tmp_path):
    write_series(tmp_path / "a", axial_positions(3), description="T1", series_number=1)
    write_series(tmp_path / "b", axial_positions(4), description="T2", series_number=2)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "report.pdf").write_bytes(b"%PDF-1.4")
    with pytest.warns(LoadWarning, match="2 non-DICOM files skipped"):
        vols = load(tmp_path)
    assert [v.warnings for v in vols] == [["2 non-DICOM files skipped"], []]
    assert load_warnings(vols) == ["2 non-DICOM files skipped"]
    assert [output_stem(v) for v in vols] == ["1_T1", "2_T2"]


def test_repeats_share_one_warning_that_names_the_series(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.81"
    for k in range(4):
        write_series(
            tmp_path, axial_positions(3), series_uid=uid, acquisition=k + 1, prefix=f"t{k}",
            description="T1 MPRAGE", series_number=4,
        )  # fmt: skip
    vols = load(tmp_path)
    assert len(vols) == 4
    note = "series 4 'T1 MPRAGE': 4 slices at every position: split into 4 volumes"
    assert all(len(v.warnings) == 1 and v.warnings[0].startswith(note) for v in vols)
    assert len(load_warnings(vols)) == 1
    assert [output_stem(v) for v in vols] == [f"4_T1_MPRAGE_repeat_{k}_of_4" for k in range(1, 5)]


def test_orientation_split_says_so_once(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.82"
    kw = {"series_uid": uid, "series_number": 5, "description": "loc"}
    write_series(tmp_path, axial_positions(3), prefix="ax", **kw)
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    write_series(tmp_path, [(0, y, 0) for y in (0.0, 3.0)], prefix="co", orientation=coronal, **kw)
    vols = load(tmp_path)
    assert load_warnings(vols) == [
        "series 5 'loc': holds 2 slice orientations: split into 2 volumes, one per orientation"
    ]
    assert [output_stem(v) for v in vols] == ["5_loc_orientation_1", "5_loc_orientation_2"]


def test_tilt_warning_names_the_series_and_a_file_volume_is_named_by_pseudonym(tmp_path):
    from napari_mlmi_interp.io import save

    step = 2.5
    pos = axial_positions(4, spacing=step, shift=(0.0, step * np.tan(np.radians(14.0))))
    write_series(tmp_path / "ct", pos, modality="CT", description="", series_number=9)
    (v,) = load(tmp_path / "ct")
    (w,) = load_warnings([v])
    assert w.startswith("series 9: gantry tilt of 14.00 degrees corrected by resampling")
    assert output_stem(v) == "series_9"  # no description to add
    (f,) = load(save(v, tmp_path / "DOE_JANE_19700101.nii.gz"))
    assert f.name == "DOE_JANE_19700101" and output_stem(f) == f.case_id and f.case_id.startswith("case-")
