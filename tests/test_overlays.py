"""Explanation overlays as layer data: same geometry as the scan, honest scaling, LPS meshes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.metrics import topk_mask, topk_threshold

AXIAL = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)


def _oblique_geometry(shape=(20, 24, 28)):
    a = np.radians(15.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ AXIAL
    return Geometry(shape, (3.0, 1.2, 0.9), (-40.0, 12.0, 7.0), rot)


def test_topk_mask_known_answers():
    a = np.arange(200, dtype=float).reshape(2, 10, 10) - 100  # -100 .. 99
    m = topk_mask(a, 5.0)
    assert m.sum() == 10 and a[m].min() == 90
    assert topk_threshold(a, 5.0) == 90
    # fewer positive voxels than k %: only the positive ones
    b = -np.ones((10, 10, 10))
    b[0, 0, :3] = [1, 2, 3]
    assert topk_mask(b, 5.0).sum() == 3
    assert not topk_mask(np.zeros((4, 4, 4)), 10.0).any()
    with pytest.raises(ValueError, match="percent must be in"):
        topk_mask(a, 0)


def test_heatmap_and_contour_share_the_scans_affine_and_keep_the_peak():
    import napari  # noqa: F401 - a hard dependency: a broken install fails, not skips

    from napari_mlmi_interp.overlays import (
        contour_layer_data,
        heatmap_layer_data,
        robust_scale,
        volume_layer_data,
    )

    g = _oblique_geometry()
    rng = np.random.default_rng(0)
    scan = Volume(rng.normal(size=g.shape).astype(np.float32), g, name="scan")
    amap = rng.normal(size=g.shape).astype(np.float32)
    amap[11, 5, 17] = 40.0
    native = scan.with_array(amap, name="map")
    scan_data, scan_attrs, _ = volume_layer_data(scan)
    data, attrs, kind = heatmap_layer_data(native, signed=True)
    assert kind == "image"
    np.testing.assert_allclose(attrs["affine"], scan_attrs["affine"])
    assert data.shape == scan_data.shape
    assert attrs["contrast_limits"] == (-1.0, 1.0)
    scale = attrs["metadata"]["scale"]
    assert scale == pytest.approx(robust_scale(amap))
    np.testing.assert_allclose(
        np.asarray(data) * scale, np.transpose(amap, attrs["metadata"]["axes"]), rtol=1e-6
    )
    peak_index = np.unravel_index(int(np.argmax(np.abs(data))), data.shape)
    world = attrs["affine"] @ np.r_[peak_index, 1.0]
    np.testing.assert_allclose(world[:3], g.to_lps([11, 5, 17]), atol=1e-6)
    _, unsigned_attrs, _ = heatmap_layer_data(native, signed=False, scale=2.0)
    assert unsigned_attrs["metadata"]["scale"] == 2.0
    # non-negative maps: the display starts at the 90th percentile of the positive values
    positive = amap[amap > 0] / 2.0
    assert unsigned_attrs["contrast_limits"] == pytest.approx((min(np.percentile(positive, 90), 0.9), 1.0))
    cdata, cattrs, ckind = contour_layer_data(native, percent=2.0)
    assert ckind == "labels" and cattrs["metadata"]["kind"] == "contour"
    np.testing.assert_allclose(cattrs["affine"], scan_attrs["affine"])
    assert abs(int(np.count_nonzero(cdata)) - round(0.02 * amap.size)) <= 1


def test_isosurface_vertices_are_in_lps_mm_on_an_oblique_grid():
    import napari  # noqa: F401 - a hard dependency: a broken install fails, not skips

    from napari_mlmi_interp.overlays import isosurface_layer_data

    g = _oblique_geometry()
    amap = np.zeros(g.shape, np.float32)
    amap[6:10, 8:14, 10:18] = 1.0  # 4 x 6 x 8 voxels = 192 voxels, 2.3 % of the volume
    (index, faces, values), attrs, kind = isosurface_layer_data(Volume(amap, g), percent=5.0)
    assert kind == "surface" and faces.shape[1] == 3 and len(values) == len(index)
    # vertices are indices of the scan layer's array; its affine (the scan layer's) gives LPS mm
    shown = g.transposed(attrs["metadata"]["axes"])
    np.testing.assert_allclose(attrs["affine"], shown.index_to_lps)
    verts = shown.to_lps(index)
    # the mesh encloses the block: its vertices' centre is the block's centre in LPS
    centre = g.to_lps(np.array([7.5, 10.5, 13.5]))
    np.testing.assert_allclose(verts.mean(axis=0), centre, atol=0.5)
    # every vertex lies within half a voxel of the block, in index space
    back = g.to_index(verts)
    assert back.min(axis=0) == pytest.approx([5.5, 7.5, 9.5], abs=1e-3)
    assert back.max(axis=0) == pytest.approx([9.5, 13.5, 17.5], abs=1e-3)
    assert isosurface_layer_data(Volume(np.zeros(g.shape, np.float32), g)) is None
