"""Do readers' ratings follow the automatic evidence? Spearman's rho per element and figure.

For each element, each run's mean rating over readers (not applicable left out) is set against
each of that element's figures stored for the run (:data:`~napari_mlmi_interp.vocabulary.
FIGURES_BY_ELEMENT`). Spearman's rho and its p value are ``scipy.stats.spearmanr``'s; the 95 %
interval is the Fisher z interval with Bonett & Wright's (2000) standard error for Spearman,
``sqrt((1 + rho**2 / 2) / (n - 3))``, defined from n = 4 runs and for |rho| < 1.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..vocabulary import FIGURES_BY_ELEMENT

__all__ = ["rating_vs_figures", "spearman"]

_Z95 = 1.959963984540054


def spearman(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """rho, 95 % interval, p and n of two paired samples (None where undefined)."""
    from scipy.stats import spearmanr

    n = len(x)
    out: dict[str, Any] = {"spearman_rho": None, "ci95": None, "p": None, "n": n}
    if n < 3:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input: scipy warns and returns NaN
        res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    if not np.isfinite(rho):
        out["note"] = "undefined: the ratings or the figure do not vary"
        return out
    out["spearman_rho"], out["p"] = rho, p
    if n < 4:
        out["note"] = "an interval needs 4 runs"
    elif abs(rho) < 1:
        se = math.sqrt((1 + rho**2 / 2) / (n - 3))
        z = math.atanh(rho)
        out["ci95"] = [math.tanh(z - _Z95 * se), math.tanh(z + _Z95 * se)]
    else:  # Fisher's z is infinite: no interval rather than a zero-width one
        out["note"] = "no interval at |rho| = 1 (Fisher z is infinite)"
    return out


def rating_vs_figures(current: pd.DataFrame, evidence: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{element: {figure: spearman(...)}}`` over runs with both a rating and the figure."""
    out: dict[str, dict[str, Any]] = {}
    for element, figures in FIGURES_BY_ELEMENT.items():
        rated = current[current["element"] == element].dropna(subset=["rating"])
        means = rated.groupby("run")["rating"].mean()
        ev = evidence[evidence["element"] == element]
        per: dict[str, Any] = {}
        for figure in figures:
            values = ev[ev["figure"] == figure].set_index("run")["value"]
            joined = pd.concat([means.rename("rating"), values.rename("value")], axis=1, join="inner")
            if len(joined):
                r = spearman(joined["rating"].to_numpy(), joined["value"].to_numpy())
                r["points"] = [[float(a), float(b)] for a, b in joined[["value", "rating"]].to_numpy()]
                per[figure] = r
        if per:
            out[element] = per
    return out
