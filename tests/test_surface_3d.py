"""Isosurfaces stay on the anatomy in the 3D view (marker: gui).

napari 0.9 does not reorder a Surface layer's vertices when every axis is displayed, while
image and labels layers follow ``dims.order``: with the radiological order ``(2, 1, 0)`` an
isosurface would sit away from its region in 3D. ``keep_surfaces_in_place`` keeps the order
the identity in 3D and gives the reader's 2D order back afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-mlmi-interp"


def _lit(viewer) -> np.ndarray:
    image = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)
    background = image[2, 2]
    return np.abs(image - background).sum(axis=-1) > 60


@pytest.mark.gui
def test_isosurface_lands_on_its_region_in_3d_and_2d_order_comes_back(make_napari_viewer):
    from napari_mlmi_interp.overlays import add_explanation_layers, contour_layer_data, isosurface_layer_data
    from napari_mlmi_interp.overlays.volume_layers import viewer_camera

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1000, 800)
    scan_layer, mask_layer = viewer.open_sample(PLUGIN, "brain_lesion")
    scan = scan_layer.metadata["volume"]
    order_2d = tuple(viewer.dims.order)
    assert order_2d != (0, 1, 2)  # radiological axial: the case napari gets wrong in 3D
    # a blob far from the centre and off every diagonal, so a permuted or mirrored surface
    # would land elsewhere on screen
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in scan.shape], indexing="ij")
    centre = (0.3 * scan.shape[0], 0.65 * scan.shape[1], 0.75 * scan.shape[2])
    blob = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / 30.0)
    native = scan.with_array(blob.astype(np.float32), name="map")
    group = {"group": "sample · test · lesion"}
    layers = add_explanation_layers(
        viewer,
        {
            "contour": contour_layer_data(native, percent=0.5, name="contour", metadata=group),
            "surface": isosurface_layer_data(native, percent=0.5, name="surface", metadata=group),
        },
    )
    contour, surface = layers["contour"], layers["surface"]
    contour.contour = 0  # filled: napari draws no contours in 3D
    viewer.dims.ndisplay = 3
    assert tuple(viewer.dims.order) == (0, 1, 2)
    viewer_camera(viewer).angles = (-20.0, 30.0, 75.0)
    viewer.reset_view()
    for layer in viewer.layers:
        layer.visible = False
    contour.visible = True
    region = _lit(viewer)
    contour.visible = False
    surface.visible = True
    shown = _lit(viewer)
    assert region.sum() > 50 and shown.sum() > 50
    overlap = (region & shown).sum() / min(region.sum(), shown.sum())
    assert overlap > 0.6, f"the isosurface covers only {overlap:.0%} of its region on screen"
    viewer.dims.ndisplay = 2
    assert tuple(viewer.dims.order) == order_2d
    del mask_layer
