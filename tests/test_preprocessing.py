"""Invertible preprocessing: a point goes to the model grid and back to where it was."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.models import InputSpec, Preprocessor, crop_or_pad_grid, reorient_grid, resample_grid
from napari_mlmi_interp.models.spec import ModelError, Normalization


def _rot(ax: float, ay: float, az: float) -> np.ndarray:
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


AXIAL = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # z->S, y->P, x->L
CASES = {
    # name: (native geometry, input spec)
    "anisotropic": (
        Geometry((20, 40, 36), (4.0, 0.9, 1.1), (-20, -30, 10), AXIAL),
        InputSpec(spacing_mm=(2.0, 2.0, 2.0)),
    ),
    "oblique": (
        Geometry((24, 30, 28), (2.5, 1.2, 1.4), (5, -12, 40), _rot(17, -9, 23) @ AXIAL),
        InputSpec(spacing_mm=(1.5, 1.5, 1.5), orientation="RAS"),
    ),
    "cropped": (
        Geometry((30, 50, 44), (1.0, 1.0, 1.0), (0, 0, 0), _rot(0, 0, 11) @ AXIAL),
        InputSpec(spacing_mm=(1.3, 1.3, 1.3), size=(16, 24, 20)),
    ),
    "padded": (
        Geometry((10, 14, 12), (3.0, 2.0, 2.0), (7, 7, -7), AXIAL),
        InputSpec(spacing_mm=(2.0, 2.0, 2.0), size=(32, 32, 32)),
    ),
    "sagittal_xyz": (
        Geometry(
            (18, 32, 30),
            (2.34, 1.8, 1.8),
            (40, -76, 30),
            _rot(1, 0.5, 0) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0.0]]),
        ),
        InputSpec(spacing_mm=(2.0, 2.0, 2.0), size=(40, 40, 40), orientation="LPS", axes="xyz"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bright_voxel_returns_to_its_physical_point(case):
    native, spec = CASES[case]
    pre = Preprocessor(spec, Normalization(kind="none"))
    rng = np.random.default_rng(3)
    for _ in range(3):
        # a bright voxel away from the borders, in the part of the scan the model grid keeps
        grid = pre.grid_for(native)
        inner = [int(rng.integers(max(2, s // 4), max(3, 3 * s // 4))) for s in grid.shape]
        point = grid.to_lps(inner)
        idx = tuple(np.clip(np.round(native.to_index(point)).astype(int), 2, np.array(native.shape) - 3))
        point = native.to_lps(idx)
        array = np.zeros(native.shape, np.float32)
        array[idx] = 1000.0
        model_input = pre.forward(Volume(array, native))
        spatial = model_input.array[0]
        assert spatial.max() > 0, "the bright voxel fell outside the model grid"
        back = pre.inverse(spatial, model_input)
        # where the mass came back: its centroid (linear interpolation keeps the first moment;
        # an argmax would snap to a model voxel centre, up to half a model voxel away)
        came_back = native.to_lps(_centroid(back))
        error = np.linalg.norm(came_back - point)
        assert error <= 0.5 * min(native.spacing), f"{case}: came back {error:.3f} mm away"
        zyx = pre.from_model_axes(spatial)
        in_model = model_input.grid.to_lps(_centroid(zyx))
        assert np.linalg.norm(in_model - point) <= 0.5 * min(native.spacing)


def _centroid(array: np.ndarray) -> np.ndarray:
    w = np.clip(array, 0, None).astype(np.float64)
    idx = np.argwhere(w > 0)
    return (idx * w[w > 0][:, None]).sum(axis=0) / w.sum()


def test_axes_xyz_transposes_the_model_input():
    native, spec = CASES["sagittal_xyz"]
    pre = Preprocessor(spec, Normalization(kind="none"))
    model_input = pre.forward(Volume(np.ones(native.shape, np.float32), native))
    assert model_input.array.shape == (1, 40, 40, 40)
    grid = model_input.grid
    # x (last array axis) points towards L, y towards P, z towards S
    assert grid.direction[0, 2] > 0.99 and grid.direction[1, 1] > 0.99 and grid.direction[2, 0] > 0.99


def test_reorient_is_a_pure_reindexing():
    g = Geometry((5, 6, 7), (2.0, 1.0, 0.5), (3, 4, 5), AXIAL)
    r = reorient_grid(g, "RAS")  # x towards R (flip L), y towards A (flip P), z towards S
    assert r.shape == (5, 6, 7)
    assert np.allclose(r.direction, AXIAL * np.array([1, -1, -1]))
    # the voxel set is unchanged: corners map onto corners
    corners = np.array(np.meshgrid([0, 4], [0, 5], [0, 6], indexing="ij")).reshape(3, -1).T
    a = {tuple(np.round(p, 6)) for p in g.to_lps(corners)}
    b = {tuple(np.round(p, 6)) for p in r.to_lps(corners)}
    assert a == b


def test_integer_crop_and_pad_copy_voxels_exactly():
    g = Geometry((8, 9, 10), (1.0, 1.0, 1.0), (0, 0, 0), AXIAL)
    arr = np.arange(np.prod(g.shape), dtype=np.float32).reshape(g.shape)
    pre = Preprocessor(InputSpec(size=(4, 13, 10)), Normalization(kind="none"))
    mi = pre.forward(Volume(arr, g))
    out = mi.array[0]
    # z cropped by 2 on each side, y padded by 2 before and 2 after
    np.testing.assert_array_equal(out[:, 2:11, :], arr[2:6])
    assert np.all(out[:, :2] == arr.min())
    back = pre.inverse(out, mi)
    np.testing.assert_array_equal(back[2:6], arr[2:6])
    assert np.all(back[:2] == 0)


def test_resample_grid_keeps_the_centre():
    g = Geometry((20, 30, 40), (3.0, 1.0, 0.7), (1, 2, 3), _rot(5, 6, 7))
    r = resample_grid(g, (1.5, 2.0, 2.0))
    assert r.shape == (40, 15, 14)
    assert np.allclose(g.to_lps((np.array(g.shape) - 1) / 2), r.to_lps((np.array(r.shape) - 1) / 2))
    c = crop_or_pad_grid(r, (None, 20, 10))
    assert c.shape == (40, 20, 10)


def test_multichannel_spec_on_a_single_channel_scan():
    g = Geometry((4, 4, 4), (1, 1, 1), (0, 0, 0))
    with pytest.raises(ModelError, match="expects 3 input channels"):
        Preprocessor(InputSpec(channels=3)).forward(Volume(np.zeros((4, 4, 4)), g))


@pytest.mark.parametrize(
    ("norm", "check"),
    [
        (
            Normalization(kind="zscore", nonzero=True),
            lambda a: abs(a[a != 0].mean()) < 1e-5 and abs(a[a != 0].std() - 1) < 1e-4,
        ),
        (Normalization(kind="window", center=40, width=400), lambda a: a.min() >= 0 and a.max() <= 1),
        (Normalization(kind="percentile", lower=1, upper=99), lambda a: a.min() == 0 and a.max() == 1),
    ],
)
def test_normalisations(norm, check):
    from napari_mlmi_interp.models.preprocessing import normalize

    a = np.random.default_rng(0).normal(100, 30, size=(6, 6, 6)).astype(np.float32)
    a[0] = 0
    assert check(normalize(a, norm))


def test_a_prepared_input_is_reused_only_for_the_same_voxels_and_grid():
    """``Volume.with_array`` shares the geometry object: the old identity check reused a stale
    input for other data (and explained the wrong scan)."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import predict, resolve_model
    from napari_mlmi_interp.sample import make_sample

    scan = make_sample().scan
    model = resolve_model("lesion-classifier")
    first = predict(scan, model)
    mi = first.model_input
    spec = (model.spec.input, model.spec.normalization)
    assert mi.made_from(scan, spec)
    assert mi.made_from(scan.with_array(scan.array.copy()), spec)  # same voxels: reused
    flat = scan.with_array(np.zeros_like(scan.array))
    assert flat.geometry is scan.geometry and not mi.made_from(flat, spec)
    shifted = scan.with_array(scan.array)
    shifted.geometry = Geometry(
        scan.geometry.shape, scan.geometry.spacing, np.add(scan.geometry.origin, 1.0), scan.geometry.direction
    )
    assert not mi.made_from(shifted, spec)
    # through the public calls: the flat scan is prepared anew, not explained as the brain
    again = predict(flat, model, model_input=mi)
    assert again.model_input is not mi and not np.array_equal(again.model_input.array, mi.array)
    direct = explain(flat, model, "gradcam", target="lesion")
    reused = explain(flat, model, "gradcam", target="lesion", model_input=mi)
    np.testing.assert_array_equal(reused.native.array, direct.native.array)


# -- normalisations brainchop uses, and the crop-to-foreground step ------------------------------
def test_minmax_maps_the_grid_range_to_0_1():
    a = np.array([[[3.0, 5.0], [7.0, 11.0]]], dtype=np.float32)
    from napari_mlmi_interp.models.preprocessing import normalize

    np.testing.assert_allclose(normalize(a, Normalization(kind="minmax")), (a - 3) / 8)


@pytest.mark.parametrize("n", [1000, 1001, 4913])
def test_quantile_normalisation_takes_brainchops_sorted_indices(n):
    from napari_mlmi_interp.models.preprocessing import normalize

    a = np.random.default_rng(n).gamma(2.0, 30.0, size=n).astype(np.float32)
    # brainchop's calculateQuantiles: sort, then index floor(n * 0.05) and ceil(n * 0.95) - 1
    s = np.sort(a)
    lo, hi = s[int(np.floor(n * 0.05))], s[int(np.ceil(n * 0.95)) - 1]
    out = normalize(a, Normalization(kind="quantile", lower=5, upper=95))
    np.testing.assert_allclose(out, (a - lo) / (hi - lo), rtol=1e-6)
    assert out.min() < 0 and out.max() > 1  # not clipped, as brainchop


def test_crop_box_pads_and_clamps_to_the_grid():
    from napari_mlmi_interp.models.preprocessing import crop_box

    mask = np.zeros((10, 12, 14), bool)
    mask[2:5, 6:8, 9:13] = True
    assert crop_box(mask, (1, 3, 4)) == ((1, 6), (3, 11), (5, 14))  # x: 13 + 4 clamped to 14
    assert crop_box(mask) == ((2, 5), (6, 8), (9, 13))
    assert crop_box(np.zeros((3, 4, 5), bool), (2, 2, 2)) == ((0, 3), (0, 4), (0, 5))


def _blob_volume() -> Volume:
    """A bright block (the 'head') in a dark 30 x 32 x 34 volume, oblique, 1.5 mm."""
    array = np.full((30, 32, 34), 5.0, np.float32)
    array[8:20, 10:25, 6:30] = 100.0
    array[12, 15, 12] = 300.0  # the maximum
    return Volume(array, Geometry(array.shape, (1.5, 1.5, 1.5), (10, -20, 5), _rot(5, 0, 12) @ AXIAL))


def _crop_pre(**crop) -> Preprocessor:
    spec = InputSpec(axes="xyz", crop={"to": "foreground", **crop})
    return Preprocessor(spec, Normalization(kind="minmax"))


def test_crop_to_foreground_records_its_box_and_is_a_sub_grid():
    vol = _blob_volume()
    pre = _crop_pre(threshold=0.2, padding_mm=3.0)  # > 0.2 x max: the block; 3 mm = 2 voxels
    mi = pre.forward(vol)
    assert mi.crop_box == ((6, 22), (8, 27), (4, 32))
    assert mi.grid.shape == (16, 19, 28) and mi.array.shape == (1, 28, 19, 16)  # xyz
    full = Preprocessor(InputSpec(axes="xyz"), Normalization(kind="minmax")).forward(vol)
    np.testing.assert_array_equal(mi.array, full.array[:, 4:32, 8:27, 6:22])  # normalised before the crop
    # the cropped grid's voxel (0, 0, 0) is the uncropped grid's voxel (6, 8, 4), in LPS mm
    np.testing.assert_allclose(mi.grid.to_lps([0, 0, 0]), full.grid.to_lps([6, 8, 4]), atol=1e-9)


def test_a_map_on_the_crop_lands_on_the_same_lps_voxels():
    vol = _blob_volume()
    pre = _crop_pre(threshold=0.2, padding_mm=3.0)
    mi = pre.forward(vol)
    rng = np.random.default_rng(0)
    model_map = rng.random(mi.array.shape[1:]).astype(np.float32)  # model axes (x, y, z)
    native = pre.inverse(model_map, mi, default=-1.0)
    assert native.shape == vol.shape
    (z0, z1), (y0, y1), (x0, x1) = mi.crop_box
    inside = np.zeros(vol.shape, bool)
    inside[z0:z1, y0:y1, x0:x1] = True
    np.testing.assert_array_equal(native[inside].reshape(z1 - z0, y1 - y0, x1 - x0), model_map.T)
    assert np.all(native[~inside] == -1.0)  # outside the crop: the background value
    # voxel by voxel in LPS: the crop's voxel k sits where the scan's voxel holding its value sits
    for k in [(0, 0, 0), (3, 7, 11), (15, 18, 27)]:
        lps = mi.grid.to_lps(np.array(k, float))
        idx = tuple(np.round(vol.geometry.to_index(lps)).astype(int))
        assert native[idx] == model_map[k[::-1]]


def test_crop_to_a_model_mask_uses_the_mask_given_on_the_scan_grid():
    vol = _blob_volume()
    mask = np.zeros(vol.shape, np.uint8)
    mask[10:13, 14:16, 20:22] = 1  # a small 'brain' inside the head
    calls = []

    def foreground(volume, name):
        calls.append(name)
        return mask

    spec = InputSpec(axes="zyx", crop={"to": "model", "model": "brain-extractor", "padding_mm": 1.5})
    mi = Preprocessor(spec, Normalization(kind="minmax"), foreground=foreground).forward(vol)
    assert calls == ["brain-extractor"]
    assert mi.crop_box == ((9, 14), (13, 17), (19, 23))
    with pytest.raises(ModelError, match="needs the name of that model"):
        InputSpec(crop={"to": "model"})
    with pytest.raises(ModelError, match="crop 'to' must be one of"):
        InputSpec(crop={"to": "brain"})


def test_a_prepared_input_is_not_reused_across_crop_settings():
    vol = _blob_volume()
    a = _crop_pre(threshold=0.2)
    b = _crop_pre(threshold=0.2, padding_mm=3.0)
    mi = a.forward(vol)
    assert mi.made_from(vol, (a.input, a.normalization))
    assert not mi.made_from(vol, (b.input, b.normalization))


def test_crop_round_trips_through_a_spec_file(tmp_path):
    from napari_mlmi_interp.models import ModelSpec

    spec = ModelSpec(
        "m",
        "segmentation",
        ["bg", "brain"],
        input=InputSpec(crop={"to": "foreground", "threshold": 0.5, "padding_mm": 20}),
        normalization=Normalization(kind="quantile", lower=5, upper=95),
    )
    import json

    path = tmp_path / "m.json"
    path.write_text(json.dumps(spec.to_dict()))
    again = ModelSpec.from_file(path)
    assert again.input == spec.input and again.normalization == spec.normalization
    assert again.input.crop.padding_mm == 20.0
