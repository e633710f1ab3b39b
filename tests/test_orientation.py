"""Orientation letters on the canvas edges, L/P/S axes in 3D, and a 3D view that is not mirrored
(#16 items 1 and 5): known answers per plane and flip, on the sample and on the real oblique
Siemens PD/T2 series, and from rendered pixels: the lesion on the same side in 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.overlays.orientation import edge_letters, orientation_letters

RADIOLOGICAL = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
}


def test_edge_letters_follow_the_displayed_axes_and_the_flips():
    assert edge_letters((1, 0), ("down", "right")) == RADIOLOGICAL["axial"]
    assert edge_letters((2, 0), ("up", "right")) == RADIOLOGICAL["coronal"]
    assert edge_letters((2, 1), ("up", "right")) == RADIOLOGICAL["sagittal"]
    # a neurological axial (patient's left on the viewer's left) and an upside-down coronal
    assert edge_letters((1, 0), ("down", "left")) == {"top": "A", "bottom": "P", "left": "L", "right": "R"}
    assert edge_letters((2, 0), ("down", "right"))["top"] == "I"
    with pytest.raises(InputError):
        edge_letters((0, 0), ("down", "right"))
    with pytest.raises(InputError):
        edge_letters((1, 0), ("sideways", "right"))


def _viewer_with(volume):
    from napari.components import ViewerModel

    from napari_mlmi_interp.overlays import add_layer, volume_layer_data

    viewer = ViewerModel()
    add_layer(viewer, volume_layer_data(volume))
    return viewer


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_the_sample_shows_the_letters_of_each_plane_and_none_in_3d(plane):
    from napari_mlmi_interp.overlays import set_radiological_view
    from napari_mlmi_interp.sample import make_sample

    viewer = _viewer_with(make_sample().scan)
    set_radiological_view(viewer, plane)
    assert orientation_letters(viewer) == RADIOLOGICAL[plane]
    viewer.dims.ndisplay = 3
    assert orientation_letters(viewer) is None and viewer.canvas.overlays.axes.visible
    caption = viewer.canvas.overlays["mlmi_orientation_3d"]
    assert caption.visible and caption.text == "3D from anterior: patient's left on the right, head up"
    from napari_mlmi_interp.overlays import viewer_camera

    viewer_camera(viewer).angles = (10.0, 20.0, 30.0)  # the reader turns it: the caption says so
    assert caption.text.startswith("3D, rotated")
    viewer.dims.ndisplay = 2
    assert orientation_letters(viewer) == RADIOLOGICAL[plane]  # the plane and its flips are back
    assert not viewer.canvas.overlays.axes.visible and not caption.visible


def test_the_real_oblique_siemens_series_gets_the_letters_of_its_nearest_axes(shared_dicom):
    from napari_mlmi_interp.io import load
    from napari_mlmi_interp.overlays.volume_layers import show_radiologically

    volume = load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11")[0]
    viewer = _viewer_with(volume)
    show_radiologically(viewer, volume)  # its acquisition plane: sagittal oblique
    assert volume.geometry.acquisition_plane() == "sagittal"
    assert orientation_letters(viewer) == RADIOLOGICAL["sagittal"]
    show_radiologically(viewer, volume, plane="axial")
    assert orientation_letters(viewer) == RADIOLOGICAL["axial"]


def test_3d_is_not_mirrored_by_the_2d_flips_and_looks_from_anterior():
    from napari_mlmi_interp.overlays import set_radiological_view, viewer_camera
    from napari_mlmi_interp.sample import make_sample

    viewer = _viewer_with(make_sample().scan)
    set_radiological_view(viewer, "coronal")  # orientation2d ("up", "right"): left-handed in 3D
    viewer.dims.ndisplay = 3
    camera = viewer_camera(viewer)
    assert tuple(viewer.dims.order) == (0, 1, 2)
    assert str(camera.handedness).lower().endswith("right")
    np.testing.assert_allclose(camera.view_direction, (0, 1, 0), atol=1e-6)  # along +P: from anterior
    np.testing.assert_allclose(camera.up_direction, (0, 0, 1), atol=1e-6)  # head up
    viewer.dims.ndisplay = 2
    assert tuple(viewer.dims.order) == (1, 2, 0) and tuple(camera.orientation2d) == ("up", "right")


def _letter_pixels(pixels: np.ndarray, edge: str) -> int:
    """Pixels of the letters' light blue (#b3e5fc) in the band along ``edge`` of a screenshot."""
    rgb = pixels[..., :3].astype(int)
    near = np.abs(rgb - np.array([0xB3, 0xE5, 0xFC])).max(axis=-1) < 40
    h, w = near.shape
    band = {
        "top": near[: h // 10, w // 3 : 2 * w // 3],
        "right": near[h // 3 : 2 * h // 3, -w // 10 :],
    }[edge]
    return int(band.sum())


def _heat_centroid_x(viewer, layer) -> float:
    """Column centroid (0 left .. 1 right) of the pixels ``layer`` changes in the canvas: a
    screenshot with it shown against one with it hidden."""
    layer.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    layer.visible = True
    shown = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    changed = np.abs(shown - without).max(axis=-1) > 30
    assert changed.sum() > 30, "the layer changed no pixels"
    return float(np.argwhere(changed)[:, 1].mean()) / changed.shape[1]


def test_the_lesion_is_on_the_same_side_in_2d_and_3d_from_rendered_pixels(make_napari_viewer):
    """The sample's lesion is in the patient's right hemisphere (LPS x < 0): the viewer's left
    in the radiological axial and coronal views, and the viewer's left seen from anterior in
    3D. (A mirrored camera seen from posterior would put it there too: the camera's
    handedness and direction are checked above.)"""
    from napari_mlmi_interp.overlays import add_layer, set_radiological_view, volume_layer_data
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    centre = sample.scan.geometry.to_lps(np.argwhere(sample.mask.array > 0).mean(axis=0)[None])[0]
    assert centre[0] < -10  # patient's right
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(900, 700)
    heat = sample.mask.with_array(sample.mask.array.astype(np.float32), name="lesion heat")
    add_layer(viewer, volume_layer_data(sample.scan))
    add_layer(viewer, volume_layer_data(heat, colormap="red", blending="additive", contrast_limits=(0, 1)))
    set_radiological_view(viewer, "axial")
    viewer.dims.point = tuple(float(c) for c in centre)
    heat_layer = viewer.layers["lesion heat"]
    axial_shot = viewer.screenshot(canvas_only=True, flash=False)
    x_axial = _heat_centroid_x(viewer, heat_layer)
    # the letters are drawn: light blue text at the top centre (A) and the right middle (L)
    assert _letter_pixels(axial_shot, "top") > 5 and _letter_pixels(axial_shot, "right") > 5
    set_radiological_view(viewer, "coronal")  # its flips ("up", "right") would mirror a 3D camera
    viewer.dims.point = tuple(float(c) for c in centre)
    x_coronal = _heat_centroid_x(viewer, heat_layer)
    viewer.dims.ndisplay = 3
    heat_layer.rendering = "mip"
    x_3d = _heat_centroid_x(viewer, heat_layer)
    assert x_axial < 0.45 and x_coronal < 0.45 and x_3d < 0.45, (x_axial, x_coronal, x_3d)


def test_in_3d_the_contours_give_way_to_their_isosurfaces_and_come_back_in_2d():
    from napari.layers import Labels, Surface

    from napari_mlmi_interp.overlays import set_radiological_view
    from napari_mlmi_interp.overlays.roles import Role, layer_metadata
    from napari_mlmi_interp.sample import make_sample

    viewer = _viewer_with(make_sample().scan)
    set_radiological_view(viewer, "axial")
    group = "scan · Grad-CAM · lesion"
    contour = Labels(np.zeros((5, 5, 5), np.uint8), metadata=layer_metadata(Role.CONTOUR, group=group))
    vertices = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    surface = Surface(
        (vertices, np.array([[0, 1, 2]])),
        visible=False,
        metadata=layer_metadata(Role.ISOSURFACE, group=group),
    )
    other = Labels(np.zeros((5, 5, 5), np.uint8), metadata=layer_metadata(Role.CONTOUR, group="another"))
    other.visible = False  # a contour the reader hid stays hidden
    for layer in (contour, surface, other):
        viewer.add_layer(layer)
    viewer.dims.ndisplay = 3
    assert not contour.visible and surface.visible and not other.visible
    viewer.dims.ndisplay = 2
    assert contour.visible and not surface.visible and not other.visible
