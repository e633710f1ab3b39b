"""Prediction quality: AUROC, accuracy, Dice."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError

__all__ = ["accuracy", "auroc", "dice"]


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic (ties count one half).

    Parameters
    ----------
    labels : array of {0, 1}
    scores : array of float
        Higher means more likely positive.

    Returns
    -------
    float
        In [0, 1]; NaN when only one class is present.

    Examples
    --------
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise InputError(f"labels and scores must have the same length, got {y.size} and {s.size}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(labels: ArrayLike, predicted: ArrayLike) -> float:
    """Fraction of equal entries."""
    a, b = np.asarray(labels).ravel(), np.asarray(predicted).ravel()
    if a.shape != b.shape:
        raise InputError(f"labels and predictions must have the same length, got {a.size} and {b.size}")
    return float((a == b).mean()) if a.size else float("nan")


def dice(a: ArrayLike, b: ArrayLike) -> float:
    """Dice overlap ``2|A & B| / (|A| + |B|)`` of two masks (1.0 when both are empty)."""
    x, y = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if x.shape != y.shape:
        raise InputError(f"masks must have the same shape, got {x.shape} and {y.shape}")
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * float((x & y).sum()) / total
