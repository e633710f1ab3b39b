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
