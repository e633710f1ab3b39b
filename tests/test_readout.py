"""Cursor readout and distance measurement (#16 item 3): LPS mm, the voxel in file order, the
scan's and the maps' values at the cursor, on the sample and on the real Siemens series; a
line's length in mm."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.overlays import add_layer, cursor_readout, line_lengths_mm, volume_layer_data


def _viewer(*volumes):
    from napari.components import ViewerModel

    from napari_mlmi_interp.overlays import set_radiological_view

    viewer = ViewerModel()
    for volume in volumes:
        add_layer(viewer, volume_layer_data(volume))
    set_radiological_view(viewer, "axial")
    return viewer


def test_the_readout_names_the_point_the_voxel_and_the_values_there():
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    scan = sample.scan
    heat = scan.with_array(
        np.linspace(0, 1, scan.array.size, dtype=np.float32).reshape(scan.shape), name="heat"
    )
    viewer = _viewer(scan)
    from napari_mlmi_interp.overlays.roles import Role, layer_metadata

    layer = add_layer(viewer, volume_layer_data(heat))
    layer.metadata.update(layer_metadata(Role.HEATMAP, volume=heat))
    k, j, i = 40, 50, 30  # (z, y, x) array index
    lps = scan.geometry.to_lps(np.array([k, j, i], float))
    text = cursor_readout(viewer, lps)
    assert text.startswith(f"LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm")
    assert f"voxel ({i}, {j}, {k})" in text  # file order (x, y, z)
    value = float(scan.array[k, j, i])
    parts = text.split(" · ")
    assert any(p.startswith(f"{scan.name} ") for p in parts)  # a short name, shown whole
    assert any(p.endswith(f"{value:.1f}".rstrip("0").rstrip(".")) for p in parts), (text, value)
    assert any(
        p.startswith("heat ") and abs(float(p.split()[-1]) - float(heat.array[k, j, i])) < 1e-3 for p in parts
    )
    # outside the scan: the point, no voxel
    assert "voxel" not in cursor_readout(viewer, lps + 1000.0)
    from napari_mlmi_interp.overlays.readout import set_readout_ras

    set_readout_ras(viewer, True)  # RAS beside LPS: x and y negated
    assert f" · RAS ({-lps[0]:.1f}, {-lps[1]:.1f}, {lps[2]:.1f}) mm · " in cursor_readout(viewer, lps)
    set_readout_ras(viewer, False)
    assert "RAS" not in cursor_readout(viewer, lps)


def test_the_readout_on_the_real_oblique_siemens_series(shared_dicom):
    from napari_mlmi_interp.io import load

    volume = load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11")[0]
    viewer = _viewer(volume)
    index = np.array([v // 2 for v in volume.shape])
    lps = volume.geometry.to_lps(index.astype(float))
    text = cursor_readout(viewer, lps)
    assert f"voxel ({index[2]}, {index[1]}, {index[0]})" in text
    assert f"{float(volume.array[tuple(index)]):.1f}".rstrip("0").rstrip(".") in text


def test_the_status_bar_carries_the_readout_after_naparis_own_text():
    from napari_mlmi_interp.sample import make_sample

    viewer = _viewer(make_sample().scan)
    viewer.cursor.position = tuple(viewer.dims.point)
    viewer.status = {"layer_base": "scan", "source_type": "", "plugin": "", "coordinates": "[1 2 3]: 5"}
    assert viewer.status["coordinates"].startswith("[1 2 3]: 5 · LPS (")
    assert "voxel (" in viewer.status["coordinates"]


def test_a_lines_length_is_in_millimetres():
    assert line_lengths_mm([[[0, 0, 0], [3, 4, 0]], [[0, 0, 0], [0, 0, 2], [0, 2, 2]]]) == [5.0, 4.0]
    assert line_lengths_mm([[[1, 1, 1]]]) == [0.0]


def test_the_measurement_layer_labels_each_line_with_its_length():
    from napari_mlmi_interp.overlays import add_measurement_layer
    from napari_mlmi_interp.sample import make_sample

    viewer = _viewer(make_sample().scan)
    layer = add_measurement_layer(viewer)
    assert layer.mode == "add_line" and viewer.layers.selection.active is layer
    layer.add_lines(np.array([[10.0, 0.0, 0.0], [10.0, 30.0, 40.0]]))
    assert layer.features["length_mm"].tolist() == pytest.approx([50.0])
    assert add_measurement_layer(viewer) is layer  # reused


def test_in_a_shown_viewer_the_status_bar_reads_the_cursor(make_napari_viewer, qtbot):
    """napari's own status thread rewrites the status on every cursor move; the readout is
    appended after it, and the window's status label shows it."""
    from napari_mlmi_interp.overlays import set_radiological_view
    from napari_mlmi_interp.sample import make_sample

    scan = make_sample().scan
    viewer = make_napari_viewer(show=True)
    add_layer(viewer, volume_layer_data(scan))
    set_radiological_view(viewer, "axial")
    lps = scan.geometry.to_lps(np.array([40.0, 50.0, 30.0]))
    viewer.dims.point = tuple(lps)
    viewer.cursor.position = tuple(lps)
    viewer.status = {"layer_base": scan.name, "source_type": "", "plugin": "", "coordinates": "[30 50 40]"}
    qtbot.waitUntil(lambda: "voxel (30, 50, 40)" in str(viewer.status), timeout=10_000)
    assert f"LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm" in viewer.status["coordinates"]
