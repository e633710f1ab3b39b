"""Ratings made elsewhere, into a study file: ``mlmi-interp ratings import CSV --study DB``.

Reads the columns that :meth:`~.study.StudyStore.export_csv` writes. Required: ``case, model,
method, target, reader, element, rating``; optional: ``model_sha256, blinded_label, params,
note, rated_at``. ``rating`` is 1-5, ``NA`` (or empty) for not applicable, and the action's
name on rows whose ``element`` is ``action``.

- A row's run is (case, model SHA-256, method, target, parameters), as everywhere in the store.
  Without ``model_sha256`` the model is known by its name only (stored as ``name:<model>``).
- A case that is not a pseudonym (``case-...``) is replaced by one (a keyed hash of the name,
  :func:`~napari_mlmi_interp.io.pseudonym.pseudonymize`): no hospital identifier enters the file.
- Importing is all or nothing (one transaction) and idempotent: a row already in the file (same
  run, reader, element, value, note and ``rated_at``; without ``rated_at``, the same as the
  reader's current value) is skipped. Export -> import -> export gives the same CSV.
"""

from __future__ import annotations

import calendar
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.pseudonym import pseudonymize
from ..vocabulary import ACTIONS, ELEMENTS
from .study import StoreError, StudyStore, _json

__all__ = ["REQUIRED_COLUMNS", "ImportReport", "import_ratings_csv"]

REQUIRED_COLUMNS = ("case", "model", "method", "target", "reader", "element", "rating")
_NA = {"", "na", "n/a", "none", "not applicable"}


@dataclass
class ImportReport:
    ratings: int = 0
    actions: int = 0
    skipped: int = 0
    runs: int = 0
    pseudonymised_cases: int = 0

    def summary(self) -> str:
        text = (
            f"{self.ratings} ratings and {self.actions} actions imported on {self.runs} runs "
            f"({self.skipped} rows already there)"
        )
        if self.pseudonymised_cases:
            text += f"; {self.pseudonymised_cases} case names replaced by their pseudonym"
        return text


def import_ratings_csv(path: str | os.PathLike[str], store: StudyStore) -> ImportReport:
    """Import a ratings CSV into ``store``; StoreError naming the line of a bad row (nothing imported)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StoreError(
                    f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)})"
                )
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"{path}: cannot read the ratings CSV ({exc})") from None
    parsed = [_parse(path, line, row) for line, row in rows]
    report = ImportReport(pseudonymised_cases=len({p["case_was"] for p in parsed if p["case_was"]}))
    db = store._db  # one transaction for the file (inside the store package)
    db.execute("BEGIN IMMEDIATE")
    try:
        runs: set[int] = set()
        for p in parsed:
            run_id = _run(db, p)
            runs.add(run_id)
            if p["element"] == "action":
                report.actions += _insert(db, "actions", "action", run_id, p, report)
            else:
                report.ratings += _insert(db, "ratings", "element, rating", run_id, p, report)
        report.runs = len(runs)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return report


def _parse(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    def bad(what: str) -> StoreError:
        return StoreError(f"{path}, line {line}: {what}")

    get = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for col in ("case", "model", "method", "reader", "element"):
        if not get.get(col):
            raise bad(f"'{col}' is empty")
    case, case_was = get["case"], None
    if not case.startswith("case-"):
        case, case_was = pseudonymize("imported case", case), case
    element, value = get["element"], get.get("rating", "")
    if element == "action":
        if value not in ACTIONS:
            raise bad(f"an action is one of {', '.join(ACTIONS)}, got {value!r}")
        rating: Any = value
    elif element in ELEMENTS:
        if value.lower() in _NA:
            rating = None
        elif value.isdigit() and 1 <= int(value) <= 5:
            rating = int(value)
        else:
            raise bad(f"a rating is 1-5 or NA, got {value!r}")
    else:
        raise bad(f"element must be one of {', '.join(ELEMENTS)} or 'action', got {element!r}")
    try:
        params = json.loads(get["params"]) if get.get("params") else {}
    except json.JSONDecodeError as exc:
        raise bad(f"'params' is not JSON ({exc.msg})") from None
    if not isinstance(params, dict):
        raise bad("'params' must be a JSON object")
    at = None
    if get.get("rated_at"):
        try:
            at = float(calendar.timegm(time.strptime(get["rated_at"], "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            raise bad(f"'rated_at' must be like 2026-01-31T14:05:00Z, got {get['rated_at']!r}") from None
    return {
        "case": case,
        "case_was": case_was,
        "model": get["model"],
        # without the column the model is known by name; an empty value stays empty (as exported)
        "sha": get["model_sha256"] if "model_sha256" in get else f"name:{get['model']}",
        "method": get["method"],
        "target": get.get("target", ""),
        "params": _json(params),
        "blinded": get.get("blinded_label") or None,
        "reader": get["reader"],
        "element": element,
        "rating": rating,
        "note": row.get("note") or "",
        "at": at,
    }


def _run(db: Any, p: dict[str, Any]) -> int:
    now = time.time()
    db.execute(
        "INSERT OR IGNORE INTO cases (pseudonym, modality, created_at) VALUES (?, '', ?)", (p["case"], now)
    )
    key = (p["case"], p["sha"], p["method"], p["target"], p["params"])
    db.execute(
        "INSERT OR IGNORE INTO runs (case_id, model_sha256, method, target, params, model, prediction, "
        "blinded_label, created_at) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?)",
        (*key, p["model"], p["blinded"], now),
    )
    row = db.execute(
        "SELECT id FROM runs WHERE case_id = ? AND model_sha256 = ? AND method = ? AND target = ? "
        "AND params = ?",
        key,
    ).fetchone()
    return int(row[0])


def _insert(db: Any, table: str, cols: str, run_id: int, p: dict[str, Any], report: ImportReport) -> int:
    values = (p["rating"],) if table == "actions" else (p["element"], p["rating"])
    group = "" if table == "actions" else " AND element = ?"
    group_args = () if table == "actions" else (p["element"],)
    if p["at"] is not None:
        where = " AND ".join(f"{c.strip()} IS ?" for c in cols.split(","))
        # rated_at has whole seconds: a row of the file it was exported from has the fraction
        seen = db.execute(
            f"SELECT 1 FROM {table} WHERE run_id = ? AND reader = ? AND {where} AND note = ? "
            "AND created_at >= ? AND created_at < ?",
            (run_id, p["reader"], *values, p["note"], p["at"], p["at"] + 1),
        ).fetchone()
    else:  # no time: the same as the reader's current value is the same rating
        current = db.execute(
            f"SELECT {cols}, note FROM {table} WHERE run_id = ? AND reader = ?{group} "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (run_id, p["reader"], *group_args),
        ).fetchone()
        seen = current is not None and tuple(current) == (*values, p["note"])
    if seen:
        report.skipped += 1
        return 0
    marks = ", ".join("?" * len(values))
    db.execute(
        f"INSERT INTO {table} (run_id, reader, {cols}, note, created_at) VALUES (?, ?, {marks}, ?, ?)",
        (run_id, p["reader"], *values, p["note"], time.time() if p["at"] is None else p["at"]),
    )
    return 1
