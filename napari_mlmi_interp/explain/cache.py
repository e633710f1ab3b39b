"""On-disk cache of explanations, so a map is never computed twice.

Key: sha256 over (package version, model sha256, the preprocessed model input's sha256,
which covers the scan *and* its preprocessing, the preprocessing spec, method, parameters,
and the target as requested: a class, "predicted", or an ROI mask's hash). The key is
computed before the model runs, so a hit returns without calling the model. An entry's
``meta.json`` keeps the map's own warnings (a convergence delta over its tolerance), so a hit
says what the first run said; warnings about the scan (its domain) are recomputed from the
scan on every call, since a rescaled scan can share a z-scored model input, and so a key.

An entry is a folder ``<key>/`` with ``maps.npz`` and ``meta.json``, written to a temporary
folder and renamed into place, so readers only ever see complete entries; a cancelled or
failed run writes nothing. The cache is bounded: after each write the least recently used
entries (by access time, refreshed on every hit) are removed until it fits. Concurrent
readers and writers are safe: a duplicate write is discarded, an entry evicted under a
reader is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CACHE_ENV", "ResultCache", "cache_key"]

CACHE_ENV = "MLMI_INTERP_CACHE"


def _default_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-mlmi-interp" / "explanations"


def cache_key(parts: dict[str, Any]) -> str:
    """Hex sha256 of a JSON-able mapping (sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """A bounded folder of explanation results.

    Parameters
    ----------
    root : path-like, optional
        Where entries live (default ``$MLMI_INTERP_CACHE`` or ``~/.cache/napari-mlmi-interp``).
    max_bytes : int
        Size bound; least recently used entries go first (default 2 GiB).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_bytes: int = 2 * 1024**3) -> None:
        self.root = Path(root) if root is not None else _default_root()
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0

    def _entry(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are 64 hex digits, got {key!r}")
        return self.root / key

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``(arrays, meta)`` for ``key``, or None."""
        entry = self._entry(key)
        try:
            meta = json.loads((entry / "meta.json").read_text())
            with np.load(entry / "maps.npz") as npz:
                arrays = {k: npz[k] for k in npz.files}
            now = time.time()
            os.utime(entry, (now, now))
        except (FileNotFoundError, NotADirectoryError, ValueError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return arrays, meta

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        """Store an entry atomically; an existing entry for ``key`` is kept."""
        entry = self._entry(key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            np.savez_compressed(tmp / "maps.npz", **arrays)
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))
            try:
                os.rename(tmp, entry)
            except OSError:  # another writer got there first: same key, same content
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.evict()
        return entry

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for e in self.entries() for f in e.iterdir() if f.is_file())

    def evict(self) -> int:
        """Remove least recently used entries until the cache fits; returns how many went."""
        entries = []
        for e in self.entries():
            try:
                size = sum(f.stat().st_size for f in e.iterdir() if f.is_file())
                entries.append((e.stat().st_atime, size, e))
            except FileNotFoundError:
                continue
        total = sum(s for _, s, _ in entries)
        removed = 0
        for _, size, e in sorted(entries, key=lambda t: t[0]):
            if total <= self.max_bytes:
                break
            shutil.rmtree(e, ignore_errors=True)
            total -= size
            removed += 1
        return removed

    def clear(self) -> None:
        for e in self.entries():
            shutil.rmtree(e, ignore_errors=True)
