"""``mlmi-interp study analyze``: a reader study's evidence, as one JSON-ready dictionary.

:func:`analyze_study` reads one or more study files (:func:`~.data.load_study`) and returns::

    {"study_files": [...], "counts": {...}, "settings": {...},
     "distributions": {"<element>": {"1": n, ..., "5": n, "NA": n}},
     "agreement": {"<element>": {"krippendorff_alpha": x, "ci95": [lo, hi], "readers": n, "items": n}},
     "pairwise_kappa": {"<element>": [{"readers": [a, b], "kappa": x, "n": n}, ...]},
     "intra_reader": {"<element>": {"<reader>": {"n": n, "exact_agreement": x, "kappa": x}}},
     "rating_vs_figures": {"<element>": {"<figure>": {"spearman_rho": x, "ci95": [lo, hi], "p": p, "n": n}}},
     "league": [{"model": m, "method": k, "elements": {"<element>": {"mean": x, "ci95": [...], ...}},
                 "actions": {...}, "action_recorded": x}, ...]}

Values that are undefined (too few readers or items, no variation) are ``None``, with a
``note`` saying why. ``counts`` also says how many evidence figures differed between files
(the first file's value is used) and which reader names rated one run in several files.
Pure compute: no napari, no Qt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..vocabulary import ELEMENTS
from .agreement import RATING_LEVELS, alpha_with_interval, intra_reader, pairwise_kappa
from .data import StudyData, load_study
from .figures import rating_vs_figures
from .league import league_table

__all__ = ["KAPPA_WEIGHTS", "analyze_data", "analyze_study"]

KAPPA_WEIGHTS = ("linear", "quadratic", "none")


def analyze_study(
    paths: Sequence[str | os.PathLike[str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    kappa_weights: str = "linear",
    repeat_gap_s: float = 3600.0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Any = None,
) -> dict[str, Any]:
    """Analyse the study held in ``paths`` (merged first when several); see the module docstring.

    Parameters
    ----------
    paths : sequence of path-like
        Study files (one per reader, or one shared).
    n_boot : int
        Bootstrap resamples behind each 95 % interval (0: no intervals).
    seed : int
        Seed of the bootstrap (the same seed gives the same intervals).
    kappa_weights : {"linear", "quadratic", "none"}
        Weights of Cohen's kappa (disagreement by 1 point costs 1/4 or 1/16 of a 4-point one).
    repeat_gap_s : float
        Two ratings of one run by one reader count as a repeat (intra-reader consistency) when
        they are at least this far apart (seconds).
    progress : callable, optional
        ``progress(done, total)`` after each element and at the end.
    cancel : CancelToken, optional
        Checked after each element: :class:`~napari_mlmi_interp.explain.Cancelled` when set.
    """
    return analyze_data(
        load_study(paths),
        n_boot=n_boot,
        seed=seed,
        kappa_weights=kappa_weights,
        repeat_gap_s=repeat_gap_s,
        progress=progress,
        cancel=cancel,
    )


def analyze_data(
    data: StudyData,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    kappa_weights: str = "linear",
    repeat_gap_s: float = 3600.0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Any = None,
) -> dict[str, Any]:
    """:func:`analyze_study` on tables already read."""
    from ..explain import Cancelled

    if kappa_weights not in KAPPA_WEIGHTS:
        raise ValueError(f"kappa_weights must be one of {', '.join(KAPPA_WEIGHTS)}, got {kappa_weights!r}")
    weights = None if kappa_weights == "none" else kappa_weights
    cur, hist = data.current, data.history
    out: dict[str, Any] = {
        "study_files": data.files,
        "counts": {
            "runs": len(data.runs),
            "cases": int(data.runs["case"].nunique()),
            "readers": data.readers,
            "ratings": len(cur),
            "not_applicable": int(cur["rating"].isna().sum()),
            "actions": len(data.actions),
            "evidence_conflicts": data.evidence_conflicts,
            "same_name": data.same_name,
        },
        "settings": {
            "alpha": "Krippendorff, ordinal, values 1-5 (krippendorff)",
            "kappa_weights": kappa_weights,
            "ci95": f"percentile bootstrap over items (runs for the league), {n_boot} resamples, seed {seed}",
            "spearman_ci95": "Fisher z, Bonett-Wright standard error",
            "repeat_gap_s": repeat_gap_s,
        },
        "distributions": {},
        "agreement": {},
        "pairwise_kappa": {},
        "intra_reader": {},
    }
    for done, element in enumerate(ELEMENTS):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        if progress is not None:
            progress(done, len(ELEMENTS) + 1)
        e_cur, e_hist = cur[cur["element"] == element], hist[hist["element"] == element]
        counts = {str(v): int((e_cur["rating"] == v).sum()) for v in RATING_LEVELS}
        counts["NA"] = int(e_cur["rating"].isna().sum())
        out["distributions"][element] = counts
        wide = e_cur.pivot_table(index="reader", columns="run", values="rating", aggfunc="last", dropna=False)
        matrix = wide.to_numpy(float) if wide.size else np.empty((0, 0))
        out["agreement"][element] = alpha_with_interval(matrix, n_boot=n_boot, seed=seed)
        out["pairwise_kappa"][element] = pairwise_kappa(e_cur, weights=weights)
        intra = intra_reader(e_hist, repeat_gap_s=repeat_gap_s, weights=weights)
        if intra:
            out["intra_reader"][element] = intra
    out["rating_vs_figures"] = rating_vs_figures(cur, data.evidence)
    out["league"] = league_table(data.runs, cur, data.actions, n_boot=n_boot, seed=seed)
    if progress is not None:
        progress(len(ELEMENTS) + 1, len(ELEMENTS) + 1)
    return out
