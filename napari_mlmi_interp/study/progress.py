"""Where a reader study stands: items done and left, per reader, across study files.

Readers may share one study file or keep one each; :func:`reader_progress` reads the progress
of the study (by its name) from every file given, read-only (a reader's file is never written
here). The readers are the study's roster (``"readers"`` in the study JSON) and whoever has
finished an item; :func:`is_complete` is true when every one of them finished every item.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..framework.study import ReaderStudy

__all__ = ["ReaderProgress", "is_complete", "reader_progress"]


@dataclass(frozen=True)
class ReaderProgress:
    reader: str
    done: int
    total: int

    @property
    def left(self) -> int:
        return self.total - self.done


def _done_items(path: Path, study: str) -> dict[str, set[str]]:
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return {}
    try:
        rows = con.execute("SELECT reader, item FROM study_progress WHERE study = ?", (study,)).fetchall()
    except sqlite3.Error:  # not a study file, or one from before reader studies: nothing done there
        rows = []
    finally:
        con.close()
    out: dict[str, set[str]] = {}
    for reader, item in rows:
        out.setdefault(str(reader), set()).add(str(item))
    return out


def reader_progress(
    study: ReaderStudy, paths: Sequence[str | os.PathLike[str]], *, readers: Iterable[str] = ()
) -> list[ReaderProgress]:
    """Per reader (roster first, then others by name): items of ``study`` done, and the total."""
    ids = {item.id for item in study.items}
    done: dict[str, set[str]] = {}
    for p in dict.fromkeys(Path(p) for p in paths):
        if Path(p).is_file():
            for reader, items in _done_items(Path(p), study.name).items():
                done.setdefault(reader, set()).update(items & ids)
    roster = list(dict.fromkeys([*study.readers, *readers]))
    names = roster + sorted(r for r in done if r not in roster)
    return [ReaderProgress(r, len(done.get(r, set())), len(ids)) for r in names]


def is_complete(progress: Sequence[ReaderProgress]) -> bool:
    """Every reader listed finished every item (and there is at least one reader)."""
    return bool(progress) and all(p.left == 0 for p in progress)
