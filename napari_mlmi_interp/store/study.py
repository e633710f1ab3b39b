"""The study file: one SQLite database holding runs, evidence, ratings, actions and annotations.

- **Nothing is lost.** WAL journal, ``synchronous=FULL``, one transaction per rating: a
  rating is on disk when :meth:`StudyStore.rate` returns, and a process killed at any moment
  leaves a file that opens cleanly with every committed row. Several processes (two readers
  on one file) may write at once: writers wait for each other (``busy_timeout``), none fails.
- **History is kept.** Ratings, actions and annotations are appended, never updated; the
  current value is the latest row. Exports give the current values, the JSON export also
  the history.
- **No patient identity.** Cases are keyed by their pseudonym (:attr:`Volume.case_id`, a
  salted hash); the store never receives names, IDs, birth dates, file paths or series
  descriptions, nor DICOM UIDs (a pseudonym cannot be tied back to a study without the salt).
- **Versioned schema.** ``PRAGMA user_version`` holds the schema version; opening an older
  file applies the missing migrations in one transaction.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlmiError
from ..vocabulary import ACTIONS, ELEMENTS
from .schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["ACTIONS", "SCHEMA_VERSION", "StoreError", "StudyStore"]


class StoreError(MlmiError):
    """The study file cannot be used (not a database, newer schema, bad value)."""


class StudyStore:
    """A study file; see the module docstring for its guarantees.

    Parameters
    ----------
    path : path-like
        The SQLite file (created when missing).
    reader : str
        Default reader name for ratings, actions and annotations.
    timeout_s : float
        How long a writer waits for another process's transaction.
    upgrade_to : int, optional
        Apply migrations only up to this version (tests of the migrations themselves).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reader: str = "reader",
        timeout_s: float = 30.0,
        upgrade_to: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.reader = reader
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate(SCHEMA_VERSION if upgrade_to is None else upgrade_to)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable study file ({exc})") from None
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: the file system does not allow a WAL journal (got {mode})")

    # -- plumbing --------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _write(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        """One statement in its own immediate transaction (committed on return)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(sql, tuple(args))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return cur

    def _migrate(self, target: int) -> None:
        db = self._db
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer version (schema {current}, this one reads up to "
                f"{SCHEMA_VERSION}); update napari-mlmi-interp"
            )
        if current == 0:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if tables:  # an SQLite file of something else: never turned into a study file
                raise StoreError(
                    f"{self.path}: not a study file (an SQLite database with tables {', '.join(tables[:5])})"
                )
        if current >= target:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self.version  # another process may have migrated meanwhile
            for v in range(current + 1, target + 1):
                for statement in MIGRATIONS[v].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {v}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- cases and runs ----------------------------------------------------------------------------
    def add_case(self, pseudonym: str, modality: str = "") -> str:
        """Register a case by pseudonym (idempotent); returns the pseudonym."""
        if not pseudonym or not str(pseudonym).startswith("case-"):
            raise StoreError(f"a case is identified by its pseudonym ('case-...'), got {pseudonym!r}")
        self._write(
            "INSERT OR IGNORE INTO cases (pseudonym, modality, created_at) VALUES (?, ?, ?)",
            (pseudonym, modality or "", time.time()),
        )
        return pseudonym

    def add_run(
        self,
        case_id: str,
        *,
        model: str,
        model_sha256: str,
        method: str,
        target: str,
        params: Mapping[str, Any] | None = None,
        prediction: Mapping[str, Any] | None = None,
        blinded_label: str | None = None,
    ) -> int:
        """The run id of (case, model, method, target, parameters), created when new."""
        self.add_case(case_id)
        key = (case_id, model_sha256, method, target, _json(params or {}))
        self._write(
            "INSERT OR IGNORE INTO runs (case_id, model_sha256, method, target, params, model, "
            "prediction, blinded_label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, model, _json(prediction or {}), blinded_label, time.time()),
        )
        row = self._db.execute(
            "SELECT id FROM runs WHERE case_id = ? AND model_sha256 = ? AND method = ? AND target = ? "
            "AND params = ?",
            key,
        ).fetchone()
        return int(row[0])

    def add_explanation(self, explanation: Any, *, blinded_label: str | None = None) -> int:
        """:meth:`add_run` from an :class:`~napari_mlmi_interp.explain.Explanation`."""
        prov = explanation.provenance
        model = prov.get("model", {})
        pred = explanation.prediction.to_dict()
        return self.add_run(
            prov.get("case_id") or explanation.native.case_id,
            model=str(model.get("name", explanation.prediction.model)),
            model_sha256=str(model.get("sha256", "")),
            method=explanation.method,
            target=str(explanation.target.get("name", "")),
            params={k: v for k, v in explanation.params.items() if _plain(v)},
            prediction=pred,
            blinded_label=blinded_label,
        )

    def run_info(self, run_id: int) -> dict[str, Any]:
        row = self._db.execute(
            "SELECT id, case_id, model, model_sha256, method, target, params, prediction, blinded_label "
            "FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no run {run_id}")
        keys = (
            "id",
            "case_id",
            "model",
            "model_sha256",
            "method",
            "target",
            "params",
            "prediction",
            "blinded_label",
        )
        out = dict(zip(keys, row, strict=True))
        out["params"] = json.loads(out["params"])
        out["prediction"] = json.loads(out["prediction"])
        return out

    def read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only query (``SELECT``/``WITH``), e.g. for a study's analysis."""
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise StoreError(f"read() takes a SELECT query, got {sql.split(None, 1)[0]!r}")
        self._db.execute("PRAGMA query_only = ON")  # a WITH ... DELETE is refused by SQLite itself
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        finally:
            self._db.execute("PRAGMA query_only = OFF")

    # -- evidence ----------------------------------------------------------------------------------
    def record_evidence(self, run_id: int, assessment: Any) -> None:
        """Store an Assessment's figures for a run, replacing earlier values of the same figures.

        Figures without a value (``n/a``: no true region drawn yet) never replace a value.
        """
        rows = [
            (run_id, key, f.element, _json(f.to_dict()["value"]), f.band)
            for key, f in assessment.figures.items()
            if f.band != "n/a"
        ]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO evidence (run_id, figure, element, value, band) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def evidence(self, run_id: int) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT figure, element, value, band FROM evidence WHERE run_id = ? ORDER BY figure", (run_id,)
        )
        return {f: {"element": e, "value": json.loads(v), "band": b} for f, e, v, b in rows}

    # -- ratings and actions -------------------------------------------------------------------------
    def rate(
        self, run_id: int, element: str, rating: int | None, note: str = "", *, reader: str | None = None
    ) -> int:
        """Record a 1-5 rating (``None`` = not applicable) of one element; committed on return."""
        if element not in ELEMENTS:
            raise StoreError(f"element must be one of {', '.join(ELEMENTS)}, got {element!r}")
        if rating is not None and (not isinstance(rating, int | np.integer) or not 1 <= int(rating) <= 5):
            raise StoreError(f"a rating is 1-5 or None (not applicable), got {rating!r}")
        cur = self._write(
            "INSERT INTO ratings (run_id, reader, element, rating, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                run_id,
                reader or self.reader,
                element,
                None if rating is None else int(rating),
                note or "",
                time.time(),
            ),
        )
        return int(cur.lastrowid)

    def ratings(self, run_id: int, *, reader: str | None = None) -> dict[str, dict[str, Any]]:
        """The current rating of each element for a run and reader."""
        rows = self._db.execute(
            "SELECT element, rating, note, created_at FROM (SELECT element, rating, note, created_at, "
            f"{_LATEST.format(by='element')} AS k FROM ratings WHERE run_id = ? AND reader = ?) WHERE k = 1",
            (run_id, reader or self.reader),
        )
        return {e: {"rating": r, "note": n, "created_at": t} for e, r, n, t in rows}

    def set_action(self, run_id: int, action: str, note: str = "", *, reader: str | None = None) -> int:
        """Record the reader's action on an explanation: accept, override, refer or flag_shortcut."""
        if action not in ACTIONS:
            raise StoreError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        cur = self._write(
            "INSERT INTO actions (run_id, reader, action, note, created_at) VALUES (?, ?, ?, ?, ?)",
            (run_id, reader or self.reader, action, note or "", time.time()),
        )
        return int(cur.lastrowid)

    def action(self, run_id: int, *, reader: str | None = None) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT action, note, created_at FROM actions WHERE run_id = ? AND reader = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (run_id, reader or self.reader),
        ).fetchone()
        return None if row is None else {"action": row[0], "note": row[1], "created_at": row[2]}

    # -- annotations ---------------------------------------------------------------------------------
    def save_annotation(
        self,
        case_id: str,
        mask: np.ndarray,
        geometry: Any,
        *,
        label: str = "true region",
        reader: str | None = None,
    ) -> int:
        """Store a drawn region (a boolean mask on the case's grid, with that grid's geometry)."""
        m = np.asarray(mask) > 0
        g = {
            "spacing": list(geometry.spacing),
            "origin": list(geometry.origin),
            "direction": np.asarray(geometry.direction).tolist(),
        }
        self.add_case(case_id)
        cur = self._write(
            "INSERT INTO annotations (case_id, reader, label, shape, geometry, voxels, mask, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case_id,
                reader or self.reader,
                label,
                _json(list(m.shape)),
                _json(g),
                int(m.sum()),
                zlib.compress(np.packbits(m.ravel()).tobytes(), 6),
                time.time(),
            ),
        )
        return int(cur.lastrowid)

    def annotation(
        self, case_id: str, *, label: str = "true region", reader: str | None = None
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The latest annotation (mask, geometry) of a case by a reader, or None."""
        row = self._db.execute(
            "SELECT shape, geometry, mask FROM annotations WHERE case_id = ? AND reader = ? AND label = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (case_id, reader or self.reader, label),
        ).fetchone()
        if row is None:
            return None
        shape = tuple(json.loads(row[0]))
        bits = np.unpackbits(np.frombuffer(zlib.decompress(row[2]), dtype=np.uint8))
        return bits[: int(np.prod(shape))].reshape(shape).astype(bool), json.loads(row[1])

    # -- reader studies ------------------------------------------------------------------------------
    def mark_done(
        self, study: str, item: str, *, run_id: int | None = None, reader: str | None = None
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO study_progress (study, reader, item, run_id, done_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (study, reader or self.reader, item, run_id, time.time()),
        )

    def done_items(self, study: str, *, reader: str | None = None) -> set[str]:
        rows = self._db.execute(
            "SELECT item FROM study_progress WHERE study = ? AND reader = ?", (study, reader or self.reader)
        )
        return {r[0] for r in rows}

    # -- exports -----------------------------------------------------------------------------------
    _CSV_COLUMNS = (
        "case",
        "model",
        "model_sha256",
        "method",
        "blinded_label",
        "target",
        "params",
        "reader",
        "element",
        "rating",
        "note",
        "rated_at",
    )

    def rows(self) -> list[dict[str, Any]]:
        """Current ratings (one row per run, reader and element) and actions (element ``action``).

        Sorted by content (case, model, method, target, parameters, reader, element), ratings
        first; ``params`` is the run's parameters as JSON, ``rating`` is ``NA`` for not
        applicable and the action's name on ``action`` rows.
        """
        out = []
        q = (
            "SELECT r.case_id, r.model, r.model_sha256, r.method, r.blinded_label, r.target, r.params, "
            "x.reader, {what}, x.note, x.created_at FROM (SELECT *, {latest} AS k FROM {table}) x "
            "JOIN runs r ON r.id = x.run_id WHERE x.k = 1"
        )
        latest = _LATEST.format(by="run_id, reader, element")
        ratings = [
            dict(zip(self._CSV_COLUMNS, row, strict=True))
            for row in self._db.execute(q.format(what="x.element, x.rating", table="ratings", latest=latest))
        ]
        for d in ratings:
            d["rating"] = "NA" if d["rating"] is None else d["rating"]
        latest = _LATEST.format(by="run_id, reader")
        actions = [
            dict(zip(self._CSV_COLUMNS, row, strict=True))
            for row in self._db.execute(q.format(what="'action', x.action", table="actions", latest=latest))
        ]
        order = {e: i for i, e in enumerate(ELEMENTS)}
        # by content, not by row id: files merged or imported in any order export alike
        for part in (ratings, actions):
            part.sort(key=lambda d: (*(str(d[c]) for c in self._CSV_COLUMNS[:8]), order.get(d["element"], 9)))
            for d in part:
                d["rated_at"] = _iso(d["rated_at"])
            out += part
        return out

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`rows` as CSV (UTF-8, header row)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self._CSV_COLUMNS)
            w.writeheader()
            w.writerows(self.rows())
        return path

    def to_dict(self) -> dict[str, Any]:
        """Everything but the annotation masks: runs with evidence, rating and action history."""
        db = self._db
        runs = []
        for (run_id,) in db.execute("SELECT id FROM runs ORDER BY id").fetchall():
            info = self.run_info(run_id)
            info["evidence"] = self.evidence(run_id)
            info["ratings"] = [
                {"reader": r, "element": e, "rating": v, "note": n, "rated_at": _iso(t)}
                for r, e, v, n, t in db.execute(
                    "SELECT reader, element, rating, note, created_at FROM ratings "
                    "WHERE run_id = ? ORDER BY id",
                    (run_id,),
                )
            ]
            info["actions"] = [
                {"reader": r, "action": a, "note": n, "at": _iso(t)}
                for r, a, n, t in db.execute(
                    "SELECT reader, action, note, created_at FROM actions WHERE run_id = ? ORDER BY id",
                    (run_id,),
                )
            ]
            runs.append(info)
        annotations = [
            {"case_id": c, "reader": r, "label": lab, "shape": json.loads(s), "voxels": v, "at": _iso(t)}
            for c, r, lab, s, v, t in db.execute(
                "SELECT case_id, reader, label, shape, voxels, created_at FROM annotations ORDER BY id"
            )
        ]
        return {
            "schema_version": self.version,
            "exported_at": _iso(time.time()),
            "current": self.rows(),
            "runs": runs,
            "annotations": annotations,
        }

    def export_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


#: The current row of a group (ratings of one element, actions) is the latest made; rows merged
#: from another file keep their time, so the order files were merged in does not matter.
_LATEST = "ROW_NUMBER() OVER (PARTITION BY {by} ORDER BY created_at DESC, id DESC)"


def _plain(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _json(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(t)))
