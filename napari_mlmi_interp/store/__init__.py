"""Study files: ratings, annotations and evidence in SQLite, safe against crashes; exports."""

from __future__ import annotations

from .study import ACTIONS, SCHEMA_VERSION, StoreError, StudyStore

__all__ = ["ACTIONS", "SCHEMA_VERSION", "StoreError", "StudyStore"]
