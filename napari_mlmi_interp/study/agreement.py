"""Agreement between readers and within one reader, from maintained libraries.

- **Krippendorff's alpha** (``krippendorff``, ordinal metric, value domain 1-5) per element over
  all readers, with a percentile bootstrap 95 % interval over items (:mod:`._bootstrap`: resamples
  without variation are left out and counted).
  Not applicable and missing ratings are missing values; an item counts when at least two
  readers rated it. When every rating is the same the library's alpha is undefined (0/0): it is
  reported as ``None`` with a note.
- **Weighted Cohen's kappa** (``sklearn.metrics.cohen_kappa_score``, linear weights by default)
  for each pair of readers, on the items both rated.
- **Intra-reader consistency**: a reader who rated the same run in two sittings at least
  ``repeat_gap_s`` apart (a re-read, not a correction made seconds later): the last rating of
  the first sitting against that of the latest, as exact agreement and weighted kappa.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ._bootstrap import percentile_ci

__all__ = ["RATING_LEVELS", "alpha", "alpha_with_interval", "intra_reader", "kappa", "pairwise_kappa"]

#: The rating scale (1-5); "not applicable" is a missing value.
RATING_LEVELS = (1, 2, 3, 4, 5)


def alpha(matrix: np.ndarray) -> float:
    """Krippendorff's ordinal alpha of a readers x items matrix (NaN = missing).

    NaN when the library leaves it undefined (no variation at all).
    """
    import krippendorff

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when every value is the same
        return float(
            krippendorff.alpha(
                reliability_data=np.asarray(matrix, float),
                level_of_measurement="ordinal",
                value_domain=list(RATING_LEVELS),
            )
        )


def alpha_with_interval(matrix: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Alpha, its bootstrap 95 % interval (resampling items), and the numbers behind it."""
    m = np.asarray(matrix, float)
    readers = int((~np.isnan(m)).any(axis=1).sum()) if m.size else 0  # readers with a 1-5 rating
    m = m[:, (~np.isnan(m)).sum(axis=0) >= 2] if m.size else m  # items at least two readers rated
    out: dict[str, Any] = {"krippendorff_alpha": None, "ci95": None, "readers": readers, "items": m.shape[1]}
    if readers == 0:
        out["note"] = "no 1-5 rating yet"
        return out
    if readers < 2 or m.shape[1] < 2:
        out["note"] = "needs two readers and two items rated by both"
        return out
    a = alpha(m)
    if not np.isfinite(a):
        out["note"] = "undefined: every rating is the same (no variation to agree on)"
        return out
    out["krippendorff_alpha"] = a
    out["ci95"], undefined = percentile_ci(m.shape[1], lambda idx: alpha(m[:, idx]), n_boot=n_boot, seed=seed)
    if undefined:
        out["note"] = (
            f"{undefined} of {n_boot} resamples had no variation (alpha undefined) and were left out"
            + ("" if out["ci95"] else "; too many for an interval")
        )
    return out


def kappa(a: np.ndarray, b: np.ndarray, *, weights: str | None = "linear") -> float:
    """Weighted Cohen's kappa of two rating vectors on the 1-5 scale (NaN when undefined)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(
            cohen_kappa_score(
                np.asarray(a, int), np.asarray(b, int), labels=list(RATING_LEVELS), weights=weights
            )
        )


def pairwise_kappa(current: pd.DataFrame, *, weights: str | None = "linear") -> list[dict[str, Any]]:
    """Kappa for each pair of readers over the runs both rated (one element's current ratings)."""
    wide = current.pivot_table(index="run", columns="reader", values="rating", aggfunc="last")
    out = []
    for r1, r2 in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[r1, r2]].dropna()
        k = kappa(both[r1].to_numpy(), both[r2].to_numpy(), weights=weights) if len(both) >= 2 else np.nan
        out.append({"readers": [r1, r2], "kappa": _num(k), "n": len(both)})
    return out


def intra_reader(
    history: pd.DataFrame, *, repeat_gap_s: float = 3600.0, weights: str | None = "linear"
) -> dict[str, dict[str, Any]]:
    """Per reader: their rating of a run at the first sitting against the latest sitting.

    A reader's ratings of one run are split into sittings wherever ``repeat_gap_s`` or more
    passed since the previous rating; within a sitting the last rating counts (a correction
    made seconds later replaces the first click). Runs rated in two or more sittings are
    the repeats.
    """
    out: dict[str, dict[str, Any]] = {}
    h = history.dropna(subset=["rating"]).sort_values("at", kind="stable")
    for reader, rows in h.groupby("reader"):
        pairs = []
        for _, g in rows.groupby("run"):
            at, ratings = g["at"].to_numpy(float), g["rating"].to_numpy(float)
            starts = np.flatnonzero(np.diff(at) >= repeat_gap_s) + 1  # first rating of each new sitting
            if len(starts):
                pairs.append((ratings[starts[0] - 1], ratings[-1]))  # end of the first, end of the last
        if not pairs:
            continue
        first, last = np.array(pairs).T
        k = kappa(first, last, weights=weights) if len(pairs) >= 2 else np.nan
        out[str(reader)] = {
            "n": len(pairs),
            "exact_agreement": float(np.mean(first == last)),
            "kappa": _num(k),
        }
    return out


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
