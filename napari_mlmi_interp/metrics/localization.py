"""Localization: does an attribution map point at the region that matters? 3D, in millimetres.

Every function takes the map and a boolean ROI on the same grid; distances use the grid's
voxel spacing (``spacing`` in mm, array axis order), so anisotropic scans are measured in
physical units, not voxels.

- **Pointing game** (Zhang et al., ECCV 2016): a hit when the map's maximum lies inside the
  ROI, or within ``tolerance_mm`` of it.
- **Relevance mass accuracy** (Arras et al., Information Fusion 2022): positive attribution
  inside the ROI over all positive attribution.
- **Relevance rank accuracy** (Arras et al.): of the ``K = |ROI|`` highest-ranked voxels,
  the fraction inside the ROI.
- **AUROC** of the map as a score for "inside the ROI" (Mann-Whitney, ties counted half).
- **Top-k Dice / IoU**: overlap of the top-k % region (:func:`~.regions.topk_mask`) with
  the ROI.
- **Peak-to-ROI distance** (mm): from the map's maximum to the nearest ROI voxel (0 inside).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from .classification import auroc as _auroc
from .regions import DEFAULT_TOPK_PERCENT, topk_mask

__all__ = [
    "peak_index",
    "peak_to_roi_mm",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "roi_auroc",
    "topk_dice",
    "topk_iou",
]


def _check(attribution: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(attribution, dtype=np.float64)
    m = np.asarray(roi) > 0
    if a.shape != m.shape:
        raise InputError(f"the map {a.shape} and the ROI {m.shape} must be on the same grid")
    if not m.any():
        raise InputError("the ROI is empty")
    return a, m


def peak_index(attribution: np.ndarray) -> tuple[int, ...]:
    """Index of the map's maximum (the first one, in C order, when tied)."""
    a = np.asarray(attribution)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(a)), a.shape))


def peak_to_roi_mm(attribution: np.ndarray, roi: np.ndarray, spacing: Sequence[float]) -> float:
    """Distance in mm from the map's maximum to the nearest ROI voxel centre (0 inside)."""
    from scipy.ndimage import distance_transform_edt

    _a, m = _check(attribution, roi)
    peak = peak_index(attribution)
    if m[peak]:
        return 0.0
    return float(distance_transform_edt(~m, sampling=tuple(float(s) for s in spacing))[peak])


def pointing_game(
    attribution: np.ndarray, roi: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 0.0
) -> bool:
    """Whether the map's maximum lies in the ROI or within ``tolerance_mm`` of it."""
    return peak_to_roi_mm(attribution, roi, spacing) <= tolerance_mm


def relevance_mass_accuracy(attribution: np.ndarray, roi: np.ndarray) -> float:
    """Positive attribution inside the ROI / all positive attribution (0 without any)."""
    a, m = _check(attribution, roi)
    positive = np.clip(a, 0, None)
    total = positive.sum()
    return float(positive[m].sum() / total) if total > 0 else 0.0


def relevance_rank_accuracy(attribution: np.ndarray, roi: np.ndarray) -> float:
    """Fraction of the ``|ROI|`` highest-attributed voxels that lie inside the ROI."""
    a, m = _check(attribution, roi)
    k = int(m.sum())
    top = np.argpartition(a.ravel(), a.size - k)[a.size - k :]
    return float(m.ravel()[top].mean())


def roi_auroc(attribution: np.ndarray, roi: np.ndarray) -> float:
    """AUROC of the map's values separating ROI voxels from the rest."""
    a, m = _check(attribution, roi)
    if m.all():
        raise InputError("the ROI covers the whole grid: nothing to separate it from")
    return float(_auroc(m.ravel().astype(int), a.ravel()))


def topk_dice(attribution: np.ndarray, roi: np.ndarray, percent: float = DEFAULT_TOPK_PERCENT) -> float:
    """Dice of the top-``percent`` % region (positive voxels) with the ROI."""
    a, m = _check(attribution, roi)
    t = topk_mask(a, percent)
    denom = t.sum() + m.sum()
    return float(2 * (t & m).sum() / denom)


def topk_iou(attribution: np.ndarray, roi: np.ndarray, percent: float = DEFAULT_TOPK_PERCENT) -> float:
    """Intersection over union of the top-``percent`` % region with the ROI."""
    a, m = _check(attribution, roi)
    t = topk_mask(a, percent)
    return float((t & m).sum() / (t | m).sum())
