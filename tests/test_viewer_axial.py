"""Open Sample, ``mlmi-interp view`` and the reader: one radiological axial view, a slider in mm
that overlays on the scan's grid leave alone, a reader that claims only what it reads, and each
load warning once per series (marker: gui for the viewer tests)."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from .dicom_factory import axial_positions, write_series

PLUGIN = "napari-mlmi-interp"


def _sample_volumes(key):
    if key == "brain_lesion":
        from napari_mlmi_interp.sample import make_sample

        s = make_sample()
    else:
        from napari_mlmi_interp.synthetic import make_shortcut_case

        s = make_shortcut_case()
    return s.scan, s.mask


def _expected_axial(scan):
    """Independently of the plugin: the S of every axial slice and the middle slice's LPS."""
    m = scan.index_to_lps
    # the sample's array axis 0 runs along S (axial stack), axes 1, 2 along P and L
    assert np.argmax(np.abs(m[:3, 0])) == 2
    s_positions = m[2, 3] + m[2, 0] * np.arange(scan.shape[0])
    middle = np.array([(n - 1) // 2 for n in scan.shape], float)
    return np.sort(s_positions), (m @ np.r_[middle, 1.0])[:3]


def _shown(make_napari_viewer, size=(1000, 800)):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(*size)
    return viewer


def _canvas_centroid(viewer, channel):
    """(row, column) of the canvas pixels lit in ``channel``, as fractions of the canvas size."""
    image = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
    others = [c for c in range(3) if c != channel]
    lit = (image[..., channel] > 100) & (image[..., others].max(axis=-1) < 60)
    assert lit.sum() > 10, "the marker is not on screen"
    rows, cols = np.nonzero(lit)
    return rows.mean() / image.shape[0], cols.mean() / image.shape[1]


@pytest.mark.gui
@pytest.mark.parametrize("key", ["brain_lesion", "shortcut_case"])
def test_open_sample_shows_the_middle_axial_slice_in_mm(make_napari_viewer, key):
    from napari_mlmi_interp.overlays import viewer_camera

    viewer = _shown(make_napari_viewer)
    scan_layer, _mask = viewer.open_sample(PLUGIN, key)
    scan = scan_layer.metadata["volume"]
    s_positions, middle_lps = _expected_axial(scan)
    # slider along S, P displayed vertically (anterior up), L horizontally to the right
    assert tuple(viewer.dims.order) == (2, 1, 0)
    assert tuple(viewer.dims.displayed) == (1, 0)
    assert tuple(viewer.dims.axis_labels) == ("L", "P", "S")
    assert [str(o.value) for o in viewer_camera(viewer).orientation2d] == ["down", "right"]
    # the slider steps through the scan's slices in mm: one step per slice, step = spacing
    s_range = viewer.dims.range[2]
    assert s_range.step == pytest.approx(scan.spacing[0])
    assert (s_range.start, s_range.stop) == pytest.approx((s_positions[0], s_positions[-1]))
    assert viewer.dims.nsteps[2] == scan.shape[0]
    # starting at the middle slice, on a slice centre (the point napari reports is its S in mm)
    np.testing.assert_allclose(viewer.dims.point, middle_lps, atol=1e-9)
    assert np.min(np.abs(s_positions - viewer.dims.point[2])) < 1e-9


@pytest.mark.gui
def test_patients_left_is_on_the_viewers_right_and_anterior_up(make_napari_viewer):
    """A marker on the lesion (patient's right, anterior) and its mirror image through the
    mid-sagittal plane (patient's left) land in the expected halves of a screenshot."""
    viewer = _shown(make_napari_viewer)
    scan_layer, mask_layer = viewer.open_sample(PLUGIN, "brain_lesion")
    mask = mask_layer.metadata["volume"]
    m = mask.index_to_lps
    voxels = np.argwhere(mask.array > 0)
    centre = m[:3, :3] @ voxels.mean(axis=0) + m[:3, 3]
    brain_centre = m[:3, :3] @ ((np.array(mask.shape) - 1) / 2) + m[:3, 3]
    assert centre[0] < brain_centre[0] and centre[1] < brain_centre[1]  # right, anterior
    # the mirror image along the array axis that runs along L (found from the affine)
    l_axis = int(np.argmax(np.abs(m[0, :3])))
    mirrored = mask.with_array(np.flip(mask.array, axis=l_axis).copy(), name="mirror")
    from napari_mlmi_interp.overlays import volume_layer_data
    from napari_mlmi_interp.overlays.volume_layers import add_layer_data

    scan_layer.visible = mask_layer.visible = False
    for volume, colormap in ((mask, "red"), (mirrored, "blue")):
        data, attrs, _ = volume_layer_data(
            volume.with_array(volume.array.astype(np.float32)), layer_type="image"
        )
        attrs.update(
            colormap=colormap, contrast_limits=(0, 1), blending="additive", interpolation2d="nearest"
        )
        add_layer_data(viewer, (data, attrs, "image"))
    viewer.dims.point = tuple(centre)
    red_row, red_col = _canvas_centroid(viewer, 0)
    blue_row, blue_col = _canvas_centroid(viewer, 2)
    assert red_col < 0.5 < blue_col  # patient's right on the viewer's left, left on the right
    assert red_row < 0.5 and blue_row < 0.5  # anterior up
    assert red_row == pytest.approx(blue_row, abs=0.02)


@pytest.mark.gui
def test_overlays_on_the_scans_grid_leave_the_slider_alone(make_napari_viewer):
    """Heatmap, contour and isosurface of a map whose top region touches the grid's border:
    same slider range, same steps, same point, no half-voxel offset."""
    from napari_mlmi_interp.overlays import (
        add_explanation_layers,
        contour_layer_data,
        heatmap_layer_data,
        isosurface_layer_data,
    )

    viewer = _shown(make_napari_viewer)
    scan_layer, _ = viewer.open_sample(PLUGIN, "brain_lesion")
    scan = scan_layer.metadata["volume"]
    before = (tuple(viewer.dims.range), tuple(viewer.dims.nsteps), tuple(viewer.dims.point))
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in scan.shape], indexing="ij")
    native = scan.with_array(np.exp(-(z**2 + (y - 40) ** 2 + (x - 50) ** 2) / 200.0), name="map")
    group = {"group": "scan · test · lesion"}
    layers = add_explanation_layers(
        viewer,
        {
            "heatmap": heatmap_layer_data(native, signed=False, name="heat", metadata=group),
            "contour": contour_layer_data(native, percent=1.0, name="contour", metadata=group),
            "surface": isosurface_layer_data(native, percent=1.0, name="surface", metadata=group),
        },
    )
    assert set(layers) == {"heatmap", "contour", "surface"}
    # the top-1 % region reaches the first slice: the surface stays on the grid
    (index, _faces, _values) = layers["surface"].data
    assert index.min() == 0.0
    after = (tuple(viewer.dims.range), tuple(viewer.dims.nsteps), tuple(viewer.dims.point))
    assert after == before
    assert viewer.dims.range[2].step == pytest.approx(scan.spacing[0])
    # every overlay maps its data to LPS mm exactly as the scan does
    for layer in layers.values():
        np.testing.assert_allclose(layer.affine.affine_matrix, scan_layer.affine.affine_matrix)


@pytest.mark.gui
def test_view_gives_the_same_view_as_open_sample(make_napari_viewer):
    """``mlmi-interp view``'s path (``add_volumes``) and Open Sample arrange the viewer alike."""
    from napari_mlmi_interp._viewer import add_volumes
    from napari_mlmi_interp.overlays import viewer_camera

    sampled = _shown(make_napari_viewer)
    sampled.open_sample(PLUGIN, "brain_lesion")
    viewed = _shown(make_napari_viewer)
    scan, mask = _sample_volumes("brain_lesion")
    layers = add_volumes(viewed, [(scan, {}), (mask, {"layer_type": "labels", "opacity": 0.4})])
    assert [ly._type_string for ly in layers] == ["image", "labels"]
    for attr in ("order", "displayed", "range", "point", "axis_labels"):
        assert tuple(getattr(viewed.dims, attr)) == tuple(getattr(sampled.dims, attr)), attr
    a, b = viewer_camera(viewed), viewer_camera(sampled)
    assert tuple(a.orientation2d) == tuple(b.orientation2d)
    np.testing.assert_allclose(a.center, b.center)
    # a focus is snapped to the slice through it
    add_volumes(viewed, [(scan, {})], focus_lps=(-25.0, 8.0, 29.3))
    s_positions, _ = _expected_axial(scan)
    nearest = s_positions[np.argmin(np.abs(s_positions - 29.3))]
    assert viewed.dims.point[2] == pytest.approx(nearest) and nearest != pytest.approx(29.3)


@pytest.mark.gui
def test_a_second_sample_keeps_the_users_view(make_napari_viewer):
    viewer = _shown(make_napari_viewer)
    viewer.open_sample(PLUGIN, "brain_lesion")
    viewer.dims.order = (0, 1, 2)
    viewer.open_sample(PLUGIN, "shortcut_case")
    assert tuple(viewer.dims.order) == (0, 1, 2)


# --- the reader ------------------------------------------------------------------------------------


def _plugin_manager():
    """npe2's plugin manager with the installed plugins discovered (a fresh process has none)."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm


def _reader_patterns():
    manifest = _plugin_manager().get_manifest(PLUGIN)
    (reader,) = manifest.contributions.readers
    return reader


@pytest.mark.parametrize(
    ("name", "claimed"),
    [
        ("foo.png", False),
        ("foo.csv", False),
        ("README", False),
        ("notes.txt", False),
        ("scan.nii.gz", True),
        ("scan.nii", True),
        ("scan.mha", True),
        ("scan.nrrd", True),
        ("IM0001.dcm", True),
        ("IM0001.IMA", True),
    ],
)
def test_reader_is_offered_only_for_the_formats_it_reads(tmp_path, name, claimed):
    path = tmp_path / name
    path.write_bytes(b"")
    offered = [r.command for r in _plugin_manager().iter_compatible_readers([str(path)])]
    assert (f"{PLUGIN}.get_reader" in offered) is claimed
    reader = _reader_patterns()
    assert "*" not in reader.filename_patterns
    assert any(fnmatch.fnmatch(name.lower(), p.lower()) for p in reader.filename_patterns) is claimed


def test_reader_is_offered_for_a_dicom_folder(tmp_path):

    from napari_mlmi_interp._reader import get_reader

    write_series(tmp_path / "series", axial_positions(2))
    offered = [r.command for r in _plugin_manager().iter_compatible_readers([str(tmp_path)])]
    assert f"{PLUGIN}.get_reader" in offered and _reader_patterns().accepts_directories
    assert get_reader(str(tmp_path)) is not None
    (tmp_path / "foo.png").write_bytes(b"\x89PNG")
    assert get_reader(str(tmp_path / "foo.png")) is None


def test_manifest_validates():
    done = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", PLUGIN], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


# --- load warnings, once per series ----------------------------------------------------------------


def _vol(name, warnings, *, uid=None, number=None, description=None):
    meta = {"SeriesNumber": number, "SeriesDescription": description} if number else {}
    return SimpleNamespace(
        name=name,
        warnings=list(warnings),
        metadata=meta,
        references={"SeriesInstanceUID": uid} if uid else {},
    )


def test_load_messages_says_each_note_once_per_series_and_names_it():
    from napari_mlmi_interp._reader import load_messages

    skipped = "/data/study: 3 non-DICOM files skipped"
    split = "4 slices at every position: split into 4 volumes by temporal position"
    mono = "MONOCHROME1: low values are displayed white"
    volumes = [
        *[
            _vol(
                f"T1 (repeat {k} of 4)",
                [split, "3 non-DICOM files skipped"],
                uid="1.2.3",
                number=4,
                description="T1",
            )
            for k in range(1, 5)
        ],
        _vol("CT head", [mono], uid="1.2.4", number=5, description="CT head"),
        _vol("CT bone", [mono], uid="1.2.5", number=6, description="CT bone"),
        _vol("scan", ["series 7 'PD': already named"], uid="1.2.6", number=7, description="PD"),
    ]
    messages = load_messages([skipped, skipped], volumes)
    assert messages == [
        skipped,
        f"series 4 'T1': {split}",
        f"series 5 'CT head': {mono}",
        f"series 6 'CT bone': {mono}",
        "series 7 'PD': already named",
    ]
    # a file without series tags is named by its volume name
    assert load_messages([], [_vol("brain", ["resampled"])]) == ["'brain': resampled"]


@pytest.mark.gui
def test_reader_notifies_each_load_warning_once(make_napari_viewer, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer = _shown(make_napari_viewer, (900, 700))
    tilt = axial_positions(4, shift=(0.0, 1.0))
    write_series(tmp_path / "a", tilt, description="T1 tilted", series_number=3)
    write_series(tmp_path / "b", tilt, description="T2 tilted", series_number=4)
    (tmp_path / "notes.txt").write_text("not an image")
    before = len(notification_manager.records)
    layers = viewer.open(str(tmp_path), plugin=PLUGIN)
    assert len(layers) == 2
    new = [str(r.message) for r in notification_manager.records[before:]]
    assert sum("non-DICOM file" in m for m in new) == 1
    for series in ("series 3 'T1 tilted'", "series 4 'T2 tilted'"):
        tilted = [m for m in new if "gantry tilt" in m and series in m]
        assert len(tilted) == 1, new
        assert tilted[0].count(series) == 1
    assert len(new) == len(set(new)) == 3
