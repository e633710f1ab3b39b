"""A league table: each model x method, its mean rating per element and what readers did.

The mean is over all current ratings (not applicable left out); its 95 % interval is a
percentile bootstrap that resamples runs (:func:`._bootstrap.percentile_ci`), since the ratings of one
run by several readers are not independent. ``actions`` gives, among the (run, reader) pairs
with a recorded action, the share of each action (accept, override, refer, flag as shortcut);
``action_recorded`` the share of rated (run, reader) pairs where the reader recorded one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..vocabulary import ACTIONS, ELEMENTS
from ._bootstrap import percentile_ci

__all__ = ["league_table", "mean_with_interval"]


def mean_with_interval(ratings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean rating, its run-bootstrap 95 % interval, the number of ratings and of runs."""
    r = ratings.dropna(subset=["rating"])
    runs = r["run"].to_numpy()
    out: dict[str, Any] = {"mean": None, "ci95": None, "n": len(r), "runs": len(set(runs))}
    if not len(r):
        return out
    out["mean"] = float(r["rating"].mean())
    groups = [g.to_numpy() for _, g in r.groupby("run")["rating"]]
    sums = np.array([g.sum() for g in groups])
    counts = np.array([len(g) for g in groups])
    out["ci95"], _ = percentile_ci(  # a mean is defined for every resample
        len(groups), lambda idx: sums[idx].sum() / counts[idx].sum(), n_boot=n_boot, seed=seed
    )
    return out


def league_table(
    runs: pd.DataFrame, current: pd.DataFrame, actions: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One entry per (model, method), best mean rating over the elements first."""
    rows = []
    for (model, method), group in runs.groupby(["model", "method"], sort=True):
        ids = set(group.index)
        cur = current[current["run"].isin(ids)]
        elements = {
            e: mean_with_interval(cur[cur["element"] == e], n_boot=n_boot, seed=seed) for e in ELEMENTS
        }
        acts = actions[actions["run"].isin(ids)]
        rated_pairs = set(map(tuple, cur[["run", "reader"]].to_numpy().tolist()))
        acted_pairs = set(map(tuple, acts[["run", "reader"]].to_numpy().tolist()))
        n_act = len(acts)
        rows.append(
            {
                "model": str(model),
                "method": str(method),
                "runs": len(ids),
                "readers": int(cur["reader"].nunique()),
                "elements": elements,
                "actions": {a: (float((acts["action"] == a).mean()) if n_act else None) for a in ACTIONS},
                "action_n": n_act,
                "action_recorded": (
                    len(rated_pairs & acted_pairs) / len(rated_pairs) if rated_pairs else None
                ),
            }
        )
    means = [
        np.nanmean([e["mean"] if e["mean"] is not None else np.nan for e in r["elements"].values()])
        if any(e["mean"] is not None for e in r["elements"].values())
        else -np.inf
        for r in rows
    ]
    order = np.argsort(-np.asarray(means), kind="stable")
    return [rows[i] for i in order]
