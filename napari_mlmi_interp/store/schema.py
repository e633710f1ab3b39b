"""The study file's schema: one SQL migration per version (``PRAGMA user_version``).

Migration ``n`` brings a file from version ``n - 1`` to ``n``; :class:`~.study.StudyStore`
applies the missing ones in one transaction when it opens an older file.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

#: Migration ``n`` brings a file from version ``n - 1`` to ``n``.
MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE cases (
            pseudonym TEXT PRIMARY KEY,
            modality TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(pseudonym),
            model TEXT NOT NULL,
            model_sha256 TEXT NOT NULL,
            method TEXT NOT NULL,
            target TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            prediction TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            UNIQUE (case_id, model_sha256, method, target, params)
        );
        CREATE TABLE evidence (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            figure TEXT NOT NULL,
            element TEXT NOT NULL,
            value TEXT,
            band TEXT NOT NULL,
            PRIMARY KEY (run_id, figure)
        );
        CREATE TABLE ratings (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            reader TEXT NOT NULL,
            element TEXT NOT NULL,
            rating INTEGER CHECK (rating BETWEEN 1 AND 5),
            note TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL
        );
        CREATE TABLE actions (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            reader TEXT NOT NULL,
            action TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL
        );
        CREATE TABLE annotations (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(pseudonym),
            reader TEXT NOT NULL,
            label TEXT NOT NULL,
            shape TEXT NOT NULL,
            geometry TEXT NOT NULL,
            voxels INTEGER NOT NULL,
            mask BLOB NOT NULL,
            created_at REAL NOT NULL
        );
    """,
    2: """
        ALTER TABLE runs ADD COLUMN blinded_label TEXT;
        CREATE TABLE study_progress (
            study TEXT NOT NULL,
            reader TEXT NOT NULL,
            item TEXT NOT NULL,
            run_id INTEGER REFERENCES runs(id),
            done_at REAL NOT NULL,
            PRIMARY KEY (study, reader, item)
        );
        CREATE INDEX ratings_by_run ON ratings (run_id, reader, element, id);
        CREATE INDEX actions_by_run ON actions (run_id, reader, id);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)
