from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.io import Geometry, Volume


def _oblique(deg: float) -> np.ndarray:
    t = np.radians(deg)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rot @ np.diag([1.0, -1.0, 1.0])


def test_index_to_lps_known_answer():
    # axial stack: z -> +S (3 mm), y -> +P (0.5 mm), x -> +L (0.7 mm)
    g = Geometry((4, 5, 6), (3.0, 0.5, 0.7), (10.0, -20.0, 30.0), np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    assert np.allclose(g.to_lps([0, 0, 0]), [10, -20, 30])
    assert np.allclose(g.to_lps([2, 1, 3]), [10 + 2.1, -20 + 0.5, 30 + 6.0])
    assert g.orientation_code() == "SPL"
    assert g.acquisition_plane() == "axial"
    assert np.isclose(g.voxel_volume_ml, 3 * 0.5 * 0.7 / 1000)


def test_to_index_inverts_to_lps():
    g = Geometry((7, 8, 9), (2.34, 1.8, 1.7), (39.7, -76.2, 30.4), _oblique(17.0))
    pts = np.random.default_rng(0).uniform(0, 6, size=(20, 3))
    assert np.allclose(g.to_index(g.to_lps(pts)), pts)
    assert np.allclose(g.lps_to_index @ g.index_to_lps, np.eye(4))


def test_from_index_to_lps_round_trip():
    g = Geometry((3, 4, 5), (1.5, 0.9, 0.8), (1.0, 2.0, 3.0), _oblique(-33.0))
    again = Geometry.from_index_to_lps(g.index_to_lps, g.shape)
    assert np.allclose(again.index_to_lps, g.index_to_lps)
    assert again.same_grid(g)


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (0, 2, 1)])
def test_transposed_keeps_every_voxel_in_place(axes):
    g = Geometry((3, 4, 5), (1.5, 0.9, 0.8), (1.0, 2.0, 3.0), _oblique(12.0))
    arr = np.arange(60).reshape(3, 4, 5)
    vol = Volume(arr, g)
    t = vol.transposed(axes)
    assert np.shares_memory(t.array, arr)  # a view, no copy
    idx = np.array([2, 3, 4])
    assert np.allclose(t.geometry.to_lps(idx[list(axes)]), g.to_lps(idx))
    assert t.array[tuple(idx[list(axes)])] == arr[tuple(idx)]


def test_nearest_lps_permutation():
    axial = Geometry((4, 5, 6), (3, 1, 1), (0, 0, 0), np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    assert axial.nearest_lps_permutation() == (2, 1, 0)
    # sagittal: z -> L, y -> -S, x -> P
    sag = Geometry((4, 5, 6), (3, 1, 1), (0, 0, 0), np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]))
    assert sag.nearest_lps_permutation() == (0, 2, 1)
    assert sag.acquisition_plane() == "sagittal"
    shown = axial.transposed(axial.nearest_lps_permutation())
    assert np.allclose(np.abs(np.diag(shown.direction)), 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spacing": (1, 0, 1)}, "spacing must be three positive"),
        ({"direction": np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])}, "direction must be orthonormal"),
        ({"shape": (0, 2, 2)}, "shape must be three positive"),
        ({"origin": (0, np.nan, 0)}, "origin must be three finite"),
    ],
)
def test_invalid_geometry_is_refused_with_a_sentence(kwargs, message):
    args = {"shape": (2, 2, 2), "spacing": (1, 1, 1), "origin": (0, 0, 0), "direction": np.eye(3)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Geometry(**args)


def test_volume_shape_must_match_geometry():
    with pytest.raises(ValueError, match="does not match geometry shape"):
        Volume(np.zeros((2, 3, 4)), Geometry((2, 3, 5), (1, 1, 1), (0, 0, 0)))
