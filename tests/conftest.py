"""Shared fixtures: the real scanner data in ../shared/data, and world-space comparison."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DICOM = Path(os.environ.get("MLMI_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dicom"


@pytest.fixture(scope="session")
def shared_dicom() -> Path:
    """``../shared/data/dicom`` (read-only real scanner series); skipped when absent."""
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real DICOM test data not found at {SHARED_DICOM} (see shared/data/README.md)")
    return SHARED_DICOM


def reference_world(nifti_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel of a reference NIfTI (read by nibabel, independent of our reader):
    returns (LPS mm of each voxel, (N, 3)), (its value, (N,))."""
    nib = pytest.importorskip("nibabel")
    img = nib.load(str(nifti_path))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = ras_to_lps @ img.affine
    data = np.asanyarray(img.dataobj)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape], indexing="ij"), -1).reshape(-1, 3)
    lps = ijk @ affine[:3, :3].T + affine[:3, 3]
    return lps, data.reshape(-1)


def assert_same_world(volume, nifti_path: Path, *, atol_mm: float = 1e-3, value_rtol: float = 0.0) -> None:
    """Every reference voxel's LPS position is one of ours (within atol_mm), same value there."""
    lps, values = reference_world(nifti_path)
    assert values.size == volume.array.size, "reference and volume hold different numbers of voxels"
    index = volume.geometry.to_index(lps)
    nearest = np.round(index)
    err_mm = np.abs(volume.geometry.to_lps(nearest) - lps).max()
    assert err_mm <= atol_mm, f"voxel positions differ by up to {err_mm:.2e} mm"
    idx = nearest.astype(int)
    assert np.all((idx >= 0) & (idx < np.array(volume.shape))), "reference voxels fall outside the volume"
    ours = volume.array[tuple(idx.T)].astype(np.float64)
    np.testing.assert_allclose(ours, values.astype(np.float64), rtol=value_rtol, atol=0)
    # every voxel of ours is hit exactly once: a bijection, not a partial overlap
    flat = np.ravel_multi_index(tuple(idx.T), volume.shape)
    assert np.unique(flat).size == volume.array.size


@pytest.fixture
def viewer_with_sample(make_napari_viewer):
    """A shown viewer (1200 x 850) with the sample brain and its lesion mask."""
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 850)
    scan, mask = viewer.open_sample("napari-mlmi-interp", "brain_lesion")
    return viewer, scan, mask


@pytest.fixture
def widgets():
    """Every panel made in a test; their running work is cancelled and awaited at the end."""
    made = []
    yield made
    for widget in made:
        widget.shutdown()
