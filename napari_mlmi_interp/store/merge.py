"""Many readers, one study: merge study files without losing or duplicating a rating.

Each reader may rate in their own study file; :func:`merge_studies` brings them into one.

- **Same run, same row.** A run is (case, model SHA-256, method, target, parameters), as in
  :meth:`~.study.StudyStore.add_run`: the same run from two files becomes one run.
- **Nothing lost, nothing twice.** A rating (action, annotation) is the same one when its run,
  reader, element (action, label and mask), value, note and time (to the second, as a CSV
  keeps it) are the same: merging a file twice, a file already merged, or a study file and
  a CSV imported from it, adds nothing; everything else is added, with its time. The current
  value stays the latest made (:data:`~.study._LATEST`), whatever the merge order.
- **One name, one reader.** A reader name that rated the same run in two files is reported
  (:attr:`MergeReport.same_name`): one person on two machines, or two people sharing a name.
- **Safe while readers write.** Each source is read through SQLite's backup API, a
  consistent snapshot even while its reader goes on rating (what comes later is added by the
  next merge); every source is copied and checked before the first row is written, each is
  merged in one transaction of the output file (a merge killed half-way leaves the output
  as it was before that source), and writers of the output wait for it instead of failing.
  Sources are never modified (older ones are migrated in the copy).
- **Evidence** is kept per run and figure; when two files hold different values for one figure
  (a stochastic method run twice), the output keeps the value it has and the report counts it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .study import StoreError, StudyStore

__all__ = ["MergeReport", "merge_studies"]


@dataclass
class MergeReport:
    """What a merge added, per source file.

    Attributes
    ----------
    added : dict
        ``{source: {"runs": n, "ratings": n, "actions": n, "annotations": n, "progress": n}}``,
        the rows new to the output.
    skipped : dict
        ``{source: {"ratings": n, "actions": n, "annotations": n}}``, rows the output already had.
    evidence_conflicts : int
        Figures whose value differed between files (the output's value was kept).
    same_name : dict
        ``{reader: n runs}``: a reader name that rated the same run in more than one file,
        one person on two machines or two people with one name (the latest rating is current).
    """

    added: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    evidence_conflicts: int = 0
    same_name: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per source ("a.sqlite: 40 ratings added, 0 already there, ...")."""
        lines = []
        for src, added in self.added.items():
            skipped = self.skipped.get(src, {})
            lines.append(
                f"{src}: {added['ratings']} ratings added ({skipped.get('ratings', 0)} already there), "
                f"{added['actions']} actions, {added['annotations']} annotations, {added['runs']} new runs"
            )
        for reader, n in self.same_name.items():
            lines.append(
                f"warning: reader '{reader}' rated {n} runs in more than one file: one person on two "
                "machines, or two people with one name? (the latest rating counts)"
            )
        if self.evidence_conflicts:
            lines.append(
                f"note: {self.evidence_conflicts} evidence figures differed between files; "
                "the first value was kept"
            )
        return "\n".join(lines)


def merge_studies(
    out: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]], *, timeout_s: float = 60.0
) -> MergeReport:
    """Merge the study files ``sources`` into ``out`` (created when missing).

    Parameters
    ----------
    out : path-like
        The study file that receives the rows; it may already hold some (merging is
        idempotent) and may be written by readers meanwhile.
    sources : sequence of path-like
        Study files to read (never modified). ``out`` itself among them is skipped.
    timeout_s : float
        How long to wait for another process's transaction on ``out``.

    Returns
    -------
    MergeReport

    Raises
    ------
    StoreError
        A source that is missing or not a study file (nothing of it is merged).
    """
    out = Path(out)
    report = MergeReport()
    with tempfile.TemporaryDirectory() as tmp:
        snapshots = []
        for i, src in enumerate(map(Path, sources)):  # every source checked before a row is written
            if not src.is_file():
                raise StoreError(f"{src}: no such study file")
            if out.exists() and src.resolve() == out.resolve():
                continue
            snapshot = Path(tmp) / f"source-{i}.sqlite"
            _snapshot(src, snapshot, timeout_s)
            StudyStore(snapshot).close()  # refuses a file that is no study file; migrates the copy
            snapshots.append((src, snapshot))
        with StudyStore(out, timeout_s=timeout_s) as target:
            for src, snapshot in snapshots:
                with StudyStore(snapshot) as source:
                    _merge_one(source, target, report, str(src))
    return report


def _snapshot(src: Path, dest: Path, timeout_s: float) -> None:
    """A consistent copy of ``src`` (its committed rows, WAL included) at ``dest``."""
    try:
        con = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
        copy = sqlite3.connect(str(dest))
        try:
            con.backup(copy)
        finally:
            copy.close()
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{src}: not a usable study file ({exc})") from None


def _merge_one(source: StudyStore, target: StudyStore, report: MergeReport, name: str) -> None:
    # the store's connection, used inside the store package: one transaction for the whole source
    src, db = source._db, target._db
    added = {"runs": 0, "ratings": 0, "actions": 0, "annotations": 0, "progress": 0}
    skipped = {"ratings": 0, "actions": 0, "annotations": 0}
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT OR IGNORE INTO cases (pseudonym, modality, created_at) VALUES (?, ?, ?)",
            src.execute("SELECT pseudonym, modality, created_at FROM cases").fetchall(),
        )
        db.executemany(
            "UPDATE cases SET modality = ? WHERE pseudonym = ? AND modality = ''",
            src.execute("SELECT modality, pseudonym FROM cases WHERE modality != ''").fetchall(),
        )
        runs = _merge_runs(src, db, added)
        report.evidence_conflicts += _merge_evidence(src, db, runs)
        rated_before = set(db.execute("SELECT DISTINCT run_id, reader FROM ratings"))
        clashes: dict[str, set[int]] = {}
        for table, cols in (
            ("ratings", "reader, element, rating, note, created_at"),
            ("actions", "reader, action, note, created_at"),
        ):
            # the same rating: same run and values, and the same second (a CSV keeps whole seconds)
            have = {(*r[:-1], int(r[-1])) for r in db.execute(f"SELECT run_id, {cols} FROM {table}")}
            for row in src.execute(f"SELECT run_id, {cols} FROM {table} ORDER BY id"):
                key = (runs[row[0]], *row[1:-1], int(row[-1]))
                if key in have:
                    skipped[table] += 1
                    continue
                have.add(key)
                marks = ", ".join("?" * len(row))
                db.execute(f"INSERT INTO {table} (run_id, {cols}) VALUES ({marks})", (runs[row[0]], *row[1:]))
                added[table] += 1
                if table == "ratings" and (key[0], key[1]) in rated_before:
                    clashes.setdefault(key[1], set()).add(key[0])
        for reader, clashed in clashes.items():
            report.same_name[reader] = report.same_name.get(reader, 0) + len(clashed)
        _merge_annotations(src, db, added, skipped)
        for study, reader, item, run_id, done_at in src.execute("SELECT * FROM study_progress"):
            cur = db.execute(
                "INSERT OR IGNORE INTO study_progress VALUES (?, ?, ?, ?, ?)",
                (study, reader, item, None if run_id is None else runs[run_id], done_at),
            )
            added["progress"] += cur.rowcount
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    report.added[name] = added
    report.skipped[name] = skipped


_RUN_KEY = "case_id, model_sha256, method, target, params"


def _merge_runs(src: sqlite3.Connection, db: sqlite3.Connection, added: dict[str, int]) -> dict[int, int]:
    """Source run id -> output run id, adding the runs the output lacks."""
    runs: dict[int, int] = {}
    rows = src.execute(f"SELECT id, {_RUN_KEY}, model, prediction, blinded_label, created_at FROM runs")
    for run_id, *key_and_rest in rows.fetchall():
        key, rest = tuple(key_and_rest[:5]), tuple(key_and_rest[5:])
        cur = db.execute(
            f"INSERT OR IGNORE INTO runs ({_RUN_KEY}, model, prediction, blinded_label, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, *rest),
        )
        added["runs"] += cur.rowcount
        where = " AND ".join(f"{c.strip()} = ?" for c in _RUN_KEY.split(","))
        runs[run_id] = int(db.execute(f"SELECT id FROM runs WHERE {where}", key).fetchone()[0])
    return runs


def _merge_evidence(src: sqlite3.Connection, db: sqlite3.Connection, runs: dict[int, int]) -> int:
    conflicts = 0
    for run_id, figure, element, value, band in src.execute("SELECT * FROM evidence").fetchall():
        mine = db.execute(
            "SELECT value FROM evidence WHERE run_id = ? AND figure = ?", (runs[run_id], figure)
        ).fetchone()
        if mine is None:
            db.execute(
                "INSERT INTO evidence VALUES (?, ?, ?, ?, ?)", (runs[run_id], figure, element, value, band)
            )
        elif mine[0] != value:
            conflicts += 1
    return conflicts


def _merge_annotations(
    src: sqlite3.Connection, db: sqlite3.Connection, added: dict[str, int], skipped: dict[str, int]
) -> None:
    cols = "case_id, reader, label, shape, geometry, voxels, mask, created_at"
    have: set[tuple[Any, ...]] = {tuple(r) for r in db.execute(f"SELECT {cols} FROM annotations")}
    for row in src.execute(f"SELECT {cols} FROM annotations ORDER BY id"):
        row = tuple(row)
        if row in have:
            skipped["annotations"] += 1
            continue
        have.add(row)
        db.execute(f"INSERT INTO annotations ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        added["annotations"] += 1
