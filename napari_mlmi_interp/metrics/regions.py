"""Regions of an attribution map: the top-k % most attributed voxels."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["DEFAULT_TOPK_PERCENT", "topk_mask", "topk_threshold"]

#: k of the top-k % region, the plugin's one default (re-exported by
#: ``framework.settings``; defined here so that overlays and exports, which may not import
#: the framework, share it). k is a share of all the map's voxels (the whole grid).
DEFAULT_TOPK_PERCENT = 1.0


def topk_threshold(attribution: np.ndarray, percent: float) -> float:
    """The value at or above which the top ``percent`` % of all voxels lie.

    Ranks by value, not by magnitude: for a signed map the top region is the strongest
    *positive* evidence. ``percent`` is in (0, 100].
    """
    if not 0 < percent <= 100:
        raise InputError(f"percent must be in (0, 100], got {percent}")
    a = np.asarray(attribution, dtype=np.float64).ravel()
    k = max(1, round(a.size * percent / 100.0))
    return float(np.partition(a, a.size - k)[a.size - k])


def topk_mask(attribution: np.ndarray, percent: float = DEFAULT_TOPK_PERCENT) -> np.ndarray:
    """Boolean mask of the top ``percent`` % voxels, keeping only attribution > 0.

    Ties at the threshold are all included (the region can be slightly larger than
    asked); a map with less positive mass than ``percent`` gives a smaller region.
    """
    a = np.asarray(attribution)
    return (a >= topk_threshold(a, percent)) & (a > 0)
