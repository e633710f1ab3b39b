"""Regions of an attribution map: the top-k % most attributed voxels."""

from __future__ import annotations

import numpy as np

__all__ = ["topk_mask", "topk_threshold"]


def topk_threshold(attribution: np.ndarray, percent: float) -> float:
    """The value at or above which the top ``percent`` % of all voxels lie.

    Ranks by value, not by magnitude: for a signed map the top region is the strongest
    *positive* evidence. ``percent`` is in (0, 100].
    """
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    a = np.asarray(attribution, dtype=np.float64).ravel()
    k = max(1, round(a.size * percent / 100.0))
    return float(np.partition(a, a.size - k)[a.size - k])


def topk_mask(attribution: np.ndarray, percent: float = 5.0) -> np.ndarray:
    """Boolean mask of the top ``percent`` % voxels, keeping only attribution > 0.

    Ties at the threshold are all included (the region can be slightly larger than
    asked); a map with less positive mass than ``percent`` gives a smaller region.
    """
    a = np.asarray(attribution)
    return (a >= topk_threshold(a, percent)) & (a > 0)
