"""Physical attribution: tie the map to patient coordinates, volumes and tissue values.

All positions are LPS millimetres through the grid's ``index_to_lps`` matrix (4x4, array
index ``(z, y, x)`` -> LPS), so an oblique, anisotropic scan is measured where the patient is.

- **Peak**: LPS position of the largest value.
- **Centroid**: positive-attribution-weighted mean LPS position inside a region (the
  attributed region by default).
- **Attributed region** (:func:`~.recognizability.mass_region`): the smallest set of voxels
  holding a fraction (default 50 %) of the positive attribution; its **volume** in mL is
  ``voxels x voxel volume / 1000`` and its **extent** is the size of its bounding box along
  L, P and S (voxel centres' spread plus one voxel's projection on each axis).
- **Intensity statistics** of the scan inside the region (HU for CT).
- **Mass per label**: share of the positive attribution falling in each label of an
  anatomical label map (label 0 = unlabelled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .localization import peak_index

__all__ = [
    "centroid_lps",
    "intensity_stats",
    "mass_per_label",
    "peak_lps",
    "region_extent_mm",
    "region_volume_ml",
]


def _affine(index_to_lps: np.ndarray) -> np.ndarray:
    m = np.asarray(index_to_lps, dtype=np.float64)
    if m.shape != (4, 4):
        raise InputError(f"index_to_lps must be a 4x4 matrix, got shape {m.shape}")
    return m


def _to_lps(index_to_lps: np.ndarray, indices: np.ndarray) -> np.ndarray:
    m = _affine(index_to_lps)
    idx = np.atleast_2d(np.asarray(indices, dtype=np.float64))
    return idx @ m[:3, :3].T + m[:3, 3]


def peak_lps(attribution: np.ndarray, index_to_lps: np.ndarray) -> np.ndarray:
    """LPS mm of the map's maximum (the first in C order when tied).

    The same voxel as the pointing game's and the peak-to-region distance's
    (:func:`~.localization.peak_index`: the largest value, also for a signed map).
    """
    return _to_lps(index_to_lps, np.array(peak_index(attribution)))[0]


def centroid_lps(
    attribution: np.ndarray, index_to_lps: np.ndarray, region: np.ndarray | None = None
) -> np.ndarray | None:
    """Positive-mass-weighted centroid in LPS mm, within ``region`` if given; None without mass."""
    a = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    if region is not None:
        a = np.where(np.asarray(region, dtype=bool), a, 0.0)
    total = a.sum()
    if total <= 0:
        return None
    idx = np.argwhere(a > 0)
    w = a[tuple(idx.T)]
    mean_index = (idx * w[:, None]).sum(axis=0) / total
    return _to_lps(index_to_lps, mean_index)[0]


def region_volume_ml(region: np.ndarray, index_to_lps: np.ndarray) -> float:
    """Volume of a boolean region in mL (voxel count x voxel volume)."""
    voxel_ml = abs(float(np.linalg.det(_affine(index_to_lps)[:3, :3]))) / 1000.0
    return float(np.count_nonzero(region) * voxel_ml)


def region_extent_mm(region: np.ndarray, index_to_lps: np.ndarray) -> np.ndarray:
    """Size in mm of the region's bounding box along L, P and S (zeros when empty).

    The spread of the voxel centres plus the extent of one voxel projected on each axis,
    so one voxel of an axis-aligned grid measures exactly its spacing.
    """
    idx = np.argwhere(np.asarray(region, dtype=bool))
    if idx.size == 0:
        return np.zeros(3)
    lps = _to_lps(index_to_lps, idx)
    one_voxel = np.abs(_affine(index_to_lps)[:3, :3]).sum(axis=1)
    return np.ptp(lps, axis=0) + one_voxel


def intensity_stats(scan: np.ndarray, region: np.ndarray) -> dict[str, float] | None:
    """Mean, SD, median, 5th/95th percentile, min and max of the scan inside ``region``."""
    values = np.asarray(scan, dtype=np.float64)[np.asarray(region, dtype=bool)]
    if values.size == 0:
        return None
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {
        "mean": float(values.mean()),
        "sd": float(values.std()),
        "median": float(median),
        "p5": float(p5),
        "p95": float(p95),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def mass_per_label(
    attribution: np.ndarray, labels: np.ndarray, names: Mapping[int, str] | Sequence[str] | None = None
) -> dict[str, float]:
    """Share of the positive attribution in each label (summing to 1), largest first.

    ``names`` maps label values to names (a mapping, or a sequence indexed by value);
    unnamed labels are reported as ``"label <n>"``, label 0 as ``"unlabelled"``.
    """
    a = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    lab = np.asarray(labels)
    if lab.shape != a.shape:
        raise InputError(f"the label map {lab.shape} and the map {a.shape} must be on the same grid")
    total = a.sum()
    if total <= 0:
        return {}
    values, inverse = np.unique(lab.ravel(), return_inverse=True)
    sums = np.bincount(inverse, weights=a.ravel(), minlength=values.size)

    def name(v: int) -> str:
        if names is not None:
            if isinstance(names, Mapping) and v in names:
                return str(names[v])
            if not isinstance(names, Mapping) and 0 <= v < len(names):
                return str(names[v])
        return "unlabelled" if v == 0 else f"label {v}"

    shares = {name(int(v)): float(s / total) for v, s in zip(values, sums, strict=True) if s > 0}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))
