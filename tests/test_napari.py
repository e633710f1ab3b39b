"""napari integration under a virtual display with a shown viewer (marker: gui)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.io import load

from .conftest import reference_world
from .dicom_factory import axial_positions, write_series

pytestmark = pytest.mark.gui
PLUGIN = "napari-mlmi-interp"


@pytest.fixture
def viewer(make_napari_viewer):
    v = make_napari_viewer(show=True)
    v.window.resize(900, 700)
    return v


def _errors():
    from napari.utils.notifications import notification_manager

    return [
        r.message
        for r in notification_manager.records
        if str(r.severity) in ("error", "ERROR") or getattr(r.severity, "value", "") == "error"
    ]


def _check_layer_geometry(layer, volume, index):
    """The layer's affine is the displayed volume's index_to_lps; a voxel's world = its LPS."""
    axes = layer.metadata["axes"]
    shown = volume.transposed(axes)
    np.testing.assert_allclose(layer.affine.affine_matrix, shown.index_to_lps, atol=1e-9)
    assert layer.data.shape == shown.shape
    shown_index = [index[a] for a in axes]
    world = np.asarray(layer.data_to_world(shown_index))
    np.testing.assert_allclose(world, volume.geometry.to_lps(index), atol=1e-6)
    assert layer.data[tuple(shown_index)] == volume.array[tuple(index)]


def test_reader_places_real_oblique_series_in_lps_mm(viewer, shared_dicom):
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    layers = viewer.open(str(folder), plugin=PLUGIN)
    volumes = load(folder)
    assert len(layers) == 2 and [ly.name for ly in layers] == [v.name for v in volumes]
    for layer, volume in zip(layers, volumes, strict=True):
        assert layer.metadata["volume"].case_id == volume.case_id
        # sagittal stack (z -> L, y -> S, x -> P): shown as (z, x, y), nearest (L, P, S)
        assert layer.metadata["axes"] == (0, 2, 1)
        _check_layer_geometry(layer, volume, (17, 40, 9))
        assert [str(u) for u in layer.units] == ["millimeter"] * 3
    assert tuple(viewer.dims.axis_labels) == ("L", "P", "S")
    # independent check against the reference converter: voxel (k, r, c) of echo 1
    lps, _ = reference_world(
        shared_dicom / "dcm_qa_pdt2" / "Ref" / "Siemens_pd+t2_tse_sag_ISO_1.8mm_3_e1.nii"
    )
    world = np.asarray(layers[0].data_to_world([0, 0, 0]))
    assert np.min(np.linalg.norm(lps - world, axis=1)) < 1e-3


def test_reader_shows_axial_series_radiologically(viewer, tmp_path):
    write_series(tmp_path, axial_positions(6, spacing=2.5), rows=16, cols=20)
    (layer,) = viewer.open(str(tmp_path), plugin=PLUGIN)
    (volume,) = load(tmp_path)
    assert layer.metadata["axes"] == (2, 1, 0)  # (z, y, x) shown as (x, y, z) = (L, P, S)
    _check_layer_geometry(layer, volume, (4, 11, 17))
    # the slider runs along S; the view shows P downwards and L to the right
    assert viewer.dims.order == (2, 1, 0)
    from napari_mlmi_interp.overlays import viewer_camera

    assert [str(o.value) for o in viewer_camera(viewer).orientation2d] == ["down", "right"]


def test_writer_round_trips_geometry_in_source_order(viewer, shared_dicom, tmp_path):
    folder = shared_dicom / "dicom2nifti" / "siemens" / "anatomical" / "001"
    (layer,) = viewer.open(str(folder), plugin=PLUGIN)
    (volume,) = load(folder)
    for suffix in (".nii.gz", ".mha", ".nrrd"):
        out = tmp_path / f"saved{suffix}"
        layer.save(str(out), plugin=PLUGIN)
        (again,) = load(out)
        np.testing.assert_array_equal(again.array, volume.array)
        np.testing.assert_allclose(again.index_to_lps, volume.index_to_lps, atol=1e-4)


def test_labels_writer_keeps_painted_voxels_in_place(viewer, tmp_path):
    write_series(tmp_path / "dcm", axial_positions(5, spacing=3.0), rows=12, cols=14)
    (image,) = viewer.open(str(tmp_path / "dcm"), plugin=PLUGIN)
    volume = image.metadata["volume"]
    from napari_mlmi_interp.overlays import volume_layer_data

    roi = volume.with_array(np.zeros(volume.shape, np.uint8), name="roi mask")
    data, attrs, kind = volume_layer_data(roi, layer_type="labels")
    assert kind == "labels"
    labels = viewer.add_labels(data, **attrs)
    target = (3, 7, 9)  # (z, y, x) in the source volume
    labels.data[tuple(target[a] for a in labels.metadata["axes"])] = 2
    out = tmp_path / "roi.nii.gz"
    labels.save(str(out), plugin=PLUGIN)
    (saved,) = load(out)
    assert saved.shape == volume.shape
    assert np.argwhere(saved.array == 2).tolist() == [list(target)]
    np.testing.assert_allclose(saved.index_to_lps, volume.index_to_lps, atol=1e-4)


def test_folder_with_two_series_gives_two_layers(viewer, tmp_path):
    write_series(tmp_path / "a", axial_positions(3), description="T1", series_number=1)
    write_series(tmp_path / "b", axial_positions(4, spacing=1.5), description="T2", series_number=2)
    layers = viewer.open(str(tmp_path), plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["T1", "T2"]
    for layer in layers:
        volume = layer.metadata["volume"]
        _check_layer_geometry(layer, volume, (1, 2, 3))


@pytest.mark.parametrize("key", ["brain_lesion", "shortcut_case"])
def test_sample_data_opens_as_scan_and_mask(viewer, key):
    layers = viewer.open_sample(PLUGIN, key)
    assert [ly._type_string for ly in layers] == ["image", "labels"]
    scan, mask = layers
    np.testing.assert_allclose(scan.affine.affine_matrix, mask.affine.affine_matrix)
    assert mask.data.max() == 1 and scan.data.shape == mask.data.shape
    # the lesion mask lies where the scan is bright (same grid, same place)
    assert scan.data[mask.data > 0].mean() > np.percentile(scan.data, 90)


@pytest.mark.parametrize(
    "case",
    ["empty_folder", "not_dicom", "zero_bytes", "truncated", "bad_nifti", "missing_slice"],
)
def test_bad_input_notifies_once_and_napari_keeps_running(viewer, tmp_path, case, shared_dicom):
    if case == "empty_folder":
        target, expected = tmp_path, "no DICOM images found"
    elif case == "not_dicom":
        target = tmp_path / "report.dcm"
        target.write_text("not an image")
        expected = "not a DICOM file"
    elif case == "zero_bytes":
        target = tmp_path / "zero.dcm"
        target.touch()
        expected = "0 bytes"
    elif case == "truncated":
        (p,) = write_series(tmp_path, axial_positions(1), rows=64, cols=64)
        p.write_bytes(p.read_bytes()[:-3000])
        target, expected = tmp_path, "pixel data cannot be decoded"
    elif case == "bad_nifti":
        target = tmp_path / "broken.nii"
        target.write_bytes(b"\x5c\x01\x00\x00" + b"\xff" * 400)
        expected = "not a readable NIfTI file"
    else:
        pos = axial_positions(5, spacing=2.0)
        del pos[2]
        write_series(tmp_path, pos)
        target, expected = tmp_path, "gap of 4.00 mm"
    before = len(_errors())
    layers = viewer.open(str(target), plugin=PLUGIN)
    assert layers == [] and len(viewer.layers) == 0
    new = _errors()[before:]
    assert len(new) == 1 and expected in new[0] and "Traceback" not in new[0]
    # napari still works: a good scan opens afterwards
    good = viewer.open(str(shared_dicom / "dicom2nifti" / "generic" / "anatomical" / "001"), plugin=PLUGIN)
    assert len(good) == 1 and len(viewer.layers) == 1


def test_get_reader_declines_what_it_does_not_read(tmp_path):
    from napari_mlmi_interp._reader import get_reader

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "sub")) is None
    assert get_reader(str(tmp_path / "nothing.nii.gz")) is None
    assert get_reader([str(tmp_path / "notes.txt"), str(tmp_path)]) is None
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    assert get_reader(str(tmp_path / "scan.nii.gz")) is not None
    # a big tree of other files is declined after a bounded peek, and a DICOM deep inside a
    # study folder is found
    big = tmp_path / "big"
    big.mkdir()
    for i in range(300):
        (big / f"n{i:03d}.txt").write_text("x")
    assert get_reader(str(big)) is None
    study = tmp_path / "study" / "series1"
    write_series(study, axial_positions(1))
    assert get_reader(str(tmp_path / "study")) is not None


def test_overlay_layers_are_written_in_the_scans_geometry_with_their_values(viewer, tmp_path):
    """Heatmap (attribution values, not display-scaled) and top-k contour, saved by the writer,
    re-open on the scan's grid voxel for voxel."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.overlays import add_explanation_layers, explanation_layer_data
    from napari_mlmi_interp.overlays.explanation_layers import topk_labels
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    result = explain(sample.scan, resolve_model("lesion-classifier"), "gradcam", target="lesion")
    layers = add_explanation_layers(
        viewer, explanation_layer_data(result, scan_name="scan", method_title="Grad-CAM", surface=False)
    )
    heat, contour = layers["heatmap"], layers["contour"]
    heat.save(str(tmp_path / "heat.nii.gz"), plugin=PLUGIN)
    contour.save(str(tmp_path / "contour.nii.gz"), plugin=PLUGIN)
    (saved_heat,) = load(tmp_path / "heat.nii.gz")
    (saved_contour,) = load(tmp_path / "contour.nii.gz")
    for saved in (saved_heat, saved_contour):
        assert saved.shape == sample.scan.shape
        np.testing.assert_allclose(saved.index_to_lps, sample.scan.index_to_lps, atol=1e-4)
    np.testing.assert_allclose(saved_heat.array, result.native.array, rtol=1e-5, atol=1e-7)
    k = contour.metadata["percent"]
    np.testing.assert_array_equal(saved_contour.array > 0, topk_labels(result.native, k) > 0)
