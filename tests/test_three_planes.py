"""The linked three-plane view (#16 item 2): each plane in its radiological view with its
letters, every layer in each, kept in step, and one crosshair moving every view to the same
LPS point, from the main canvas or any plane."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def test_three_linked_planes_share_one_crosshair(make_napari_viewer):
    from napari_mlmi_interp._widgets.three_planes import CROSSHAIR, toggle_three_planes
    from napari_mlmi_interp.overlays import (
        add_layer,
        orientation_letters,
        set_radiological_view,
        volume_layer_data,
    )
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    viewer = make_napari_viewer(show=True)
    scan = add_layer(viewer, volume_layer_data(sample.scan))
    mask = add_layer(viewer, volume_layer_data(sample.mask))
    set_radiological_view(viewer, "axial")
    view = toggle_three_planes(viewer)
    letters = {plane: orientation_letters(model) for plane, model in view.models.items()}
    assert letters["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert letters["coronal"] == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert letters["sagittal"] == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    for model in view.models.values():
        assert [ly.name for ly in model.layers][:2] == [scan.name, mask.name]
        assert np.shares_memory(model.layers[scan.name].data, scan.data)  # no copy of the voxels
        np.testing.assert_allclose(model.layers[scan.name].affine.affine_matrix, scan.affine.affine_matrix)
    # a click on the lesion in the coronal plane moves every view there
    centre = sample.scan.geometry.to_lps(np.argwhere(sample.mask.array > 0).mean(axis=0)[None])[0]
    view._clicked(view.models["coronal"], SimpleNamespace(type="mouse_press", position=tuple(centre)))
    for v in (viewer, *view.models.values()):
        np.testing.assert_allclose(v.dims.point, centre, atol=1.01)  # to the slice (2 mm voxels)
        np.testing.assert_allclose(v.layers[CROSSHAIR].data[0], centre)
    assert viewer.layers.selection.active is not viewer.layers[CROSSHAIR]
    # the slice shown in each plane holds the lesion: the mask's value at the crosshair is 1
    index = np.round(sample.mask.geometry.to_index(centre)).astype(int)
    assert sample.mask.array[tuple(index)] == 1
    # properties follow the main layers; removal too
    mask.visible = False
    mask.opacity = 0.3
    assert all(
        not m.layers[mask.name].visible and m.layers[mask.name].opacity == 0.3 for m in view.models.values()
    )
    viewer.layers.remove(mask)
    assert all(mask.name not in m.layers for m in view.models.values())
    assert toggle_three_planes(viewer) is None  # one more click closes it
