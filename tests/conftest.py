"""Shared fixtures: the real scanner data in ../shared/data, and world-space comparison."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The real test data (DICOM series, brainchop models, MONAI bundles): ``MLMI_SHARED_DATA``, or
#: ``shared/data`` beside the clone.
SHARED_DATA = Path(os.environ.get("MLMI_SHARED_DATA") or ROOT.parent / "shared" / "data")
SHARED_DICOM = SHARED_DATA / "dicom"
#: World-space agreement with the independent reference NIfTIs, in mm. Measured worst case:
#: 9.6e-5 mm (dicom2nifti ``ge/anatomical/001``; the reference stores its affine in float32),
#: 1.4e-5 mm or less on every other series.
WORLD_ATOL_MM = 1e-4


def in_ci() -> bool:
    """Whether this run is a CI run (``CI`` set to true, as GitHub Actions and most CIs do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_shared(sub: str) -> Path:
    """``SHARED_DATA / sub``; when it is missing, fail in CI and skip elsewhere, saying where to point."""
    path = SHARED_DATA / sub
    if path.exists():
        return path
    message = (
        f"real test data not found at {path}: set MLMI_SHARED_DATA to the folder that holds "
        f"{sub}/ (default: shared/data beside the clone, {ROOT.parent / 'shared' / 'data'})"
    )
    if in_ci():
        pytest.fail(f"{message}; CI must run the real-data tests", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dicom() -> Path:
    """``shared/data/dicom`` (read-only real scanner series); fails in CI, skips elsewhere when absent."""
    return require_shared("dicom")


@pytest.fixture(scope="session")
def shared_brainchop() -> Path:
    """``shared/data/brainchop`` (real tfjs models, a real T1); fails in CI, skips elsewhere if absent."""
    return require_shared("brainchop")


@pytest.fixture(scope="session")
def shared_bundles() -> Path:
    """``shared/data/monai-bundles`` (bundle configurations); fails in CI, skips elsewhere if absent."""
    return require_shared("monai-bundles")


def reference_world(nifti_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel of a reference NIfTI (read by nibabel, independent of our reader):
    returns (LPS mm of each voxel, (N, 3)), (its value, (N,))."""
    img = nib.load(str(nifti_path))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = ras_to_lps @ img.affine
    data = np.asanyarray(img.dataobj)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape], indexing="ij"), -1).reshape(-1, 3)
    lps = ijk @ affine[:3, :3].T + affine[:3, 3]
    return lps, data.reshape(-1)


def assert_same_world(
    volume, nifti_path: Path, *, atol_mm: float = WORLD_ATOL_MM, value_rtol: float = 0.0
) -> None:
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
