"""The percentile bootstrap interval behind every interval of the analysis except Spearman's.

Written out (a dozen lines of numpy) rather than ``scipy.stats.bootstrap``, which gives no
interval at all as soon as one resample's statistic is undefined (alpha of a resample where
every rating happens to be the same): here such resamples are left out and counted, and the
interval is given when at least 95 % of the resamples are defined.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["percentile_ci"]

#: The share of resamples that must give a number for the interval to be reported.
MIN_DEFINED = 0.95


def percentile_ci(
    n_units: int, statistic: Callable[[np.ndarray], float], *, n_boot: int, seed: int
) -> tuple[list[float] | None, int]:
    """95 % interval of ``statistic(indices)`` over resampled units, and the undefined resamples.

    ``statistic`` receives an integer array of ``n_units`` unit indices drawn with replacement;
    the units are what is independent (items, runs), not the single ratings. Returns
    ``(None, 0)`` without resamples (``n_boot`` 0, fewer than two units).
    """
    if n_boot <= 0 or n_units < 2:
        return None, 0
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n_units, n_units)) for _ in range(n_boot)], float)
    defined = values[np.isfinite(values)]
    undefined = n_boot - len(defined)
    if len(defined) < MIN_DEFINED * n_boot:
        return None, undefined
    lo, hi = np.percentile(defined, [2.5, 97.5])
    return [float(lo), float(hi)], undefined
