"""A study's ratings as tables: what the analysis reads from one or more study files.

The files (one or several) are first merged (:func:`~napari_mlmi_interp.store.merge.merge_studies`,
into a temporary file), so that the analysis sees each run once and each rating once, exactly
as ``mlmi-interp study merge`` would, and never writes to a study file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import StoreError, StudyStore
from ..store.merge import merge_studies

__all__ = ["StudyData", "load_study"]


@dataclass
class StudyData:
    """The tables of a study.

    Attributes
    ----------
    runs : DataFrame
        One row per run (index ``run``): ``case, model, model_sha256, method, target, params``.
    history : DataFrame
        Every rating ever made: ``run, reader, element, rating`` (float, NaN = not applicable),
        ``at`` (seconds since the epoch).
    current : DataFrame
        The latest rating per (run, reader, element), the same columns.
    actions : DataFrame
        The latest action per (run, reader): ``run, reader, action``.
    evidence : DataFrame
        Numeric figures: ``run, figure, element, value``.
    files : list of str
        The study files read.
    evidence_conflicts : int
        Figures whose value differed between the files (the first file's value is used).
    same_name : dict
        Reader names that rated the same run in more than one file, with the number of runs.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    current: pd.DataFrame
    actions: pd.DataFrame
    evidence: pd.DataFrame
    files: list[str]
    evidence_conflicts: int = 0
    same_name: dict[str, int] = field(default_factory=dict)

    @property
    def readers(self) -> list[str]:
        return sorted(set(self.history["reader"]) | set(self.actions["reader"]))


def load_study(paths: Sequence[str | os.PathLike[str]]) -> StudyData:
    """Read one study file, or merge several (in a temporary file) and read the result."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise StoreError("name at least one study file")
    # always through a merge into a temporary file: the study files are only read (snapshots)
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged.sqlite"
        report = merge_studies(merged, paths)
        with StudyStore(merged) as store:
            data = _tables(store, [str(p) for p in paths])
    data.evidence_conflicts = report.evidence_conflicts
    data.same_name = dict(report.same_name)
    return data


def _tables(store: StudyStore, files: list[str]) -> StudyData:
    runs = pd.DataFrame(
        store.read("SELECT id, case_id, model, model_sha256, method, target, params FROM runs ORDER BY id"),
        columns=["run", "case", "model", "model_sha256", "method", "target", "params"],
    ).set_index("run")
    history = pd.DataFrame(
        store.read(
            "SELECT run_id, reader, element, rating, created_at, id FROM ratings ORDER BY created_at, id"
        ),
        columns=["run", "reader", "element", "rating", "at", "id"],
    )
    history["rating"] = pd.to_numeric(history["rating"], errors="coerce").astype(float)
    # the latest per (run, reader, element), as the store's own "current" (time, then row id)
    current = history.groupby(["run", "reader", "element"], sort=False).tail(1).reset_index(drop=True)
    actions = pd.DataFrame(
        store.read(
            "SELECT run_id, reader, action FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY run_id, reader "
            "ORDER BY created_at DESC, id DESC) AS k FROM actions) WHERE k = 1"
        ),
        columns=["run", "reader", "action"],
    )
    rows = []
    for run, figure, element, value in store.read("SELECT run_id, figure, element, value FROM evidence"):
        v = _number(value)
        if v is not None:
            rows.append((run, figure, element, v))
    evidence = pd.DataFrame(rows, columns=["run", "figure", "element", "value"])
    return StudyData(runs, history.drop(columns="id"), current.drop(columns="id"), actions, evidence, files)


def _number(value: str | None) -> float | None:
    """A stored figure's value when it is one finite number (booleans count as 0/1)."""
    if value is None:
        return None
    try:
        v = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        return None
    if isinstance(v, bool | int | float) and np.isfinite(float(v)):
        return float(v)
    return None
