"""The on-disk cache of retrieved instances: keyed by UIDs, bounded in size, least recently used out.

Layout: ``<root>/<server>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
where ``<server>`` is a hash of the DICOMweb root (no host name, and no patient name or ID
anywhere in a path). ``root`` is ``MLMI_DICOMWEB_CACHE`` (default
``~/.cache/napari-mlmi-interp/dicomweb``); the cache holds at most ``MLMI_DICOMWEB_CACHE_MB``
mebibytes (default 4096): after each retrieval the series used longest ago are removed
until it fits, never a series in use. Files are written atomically (a partial download
never looks like an instance).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path

from .auth import user_path

__all__ = ["DEFAULT_CACHE_MB", "cache_limit_bytes", "cache_root", "evict", "series_folder", "touch"]

DEFAULT_CACHE_MB = 4096
_USED = ".used"


def cache_root() -> Path:
    """The cache folder: ``MLMI_DICOMWEB_CACHE`` or ``~/.cache/napari-mlmi-interp/dicomweb``."""
    return user_path("MLMI_DICOMWEB_CACHE", "XDG_CACHE_HOME", ".cache", "dicomweb")


def cache_limit_bytes() -> int:
    try:
        mb = float(os.environ.get("MLMI_DICOMWEB_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(max(mb, 0) * 1024**2)


def series_folder(root: str, study: str, series: str) -> Path:
    """Where the instances of one series of one server are kept."""
    server = hashlib.sha256(root.encode("utf-8")).hexdigest()[:16]
    return cache_root() / server / study / series


def touch(folder: Path) -> None:
    """Mark ``folder`` as used now (the order in which :func:`evict` removes series)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _USED).write_text(f"{time.time():.6f}\n")


def _used_at(folder: Path) -> float:
    try:
        return float((folder / _USED).read_text().strip())
    except (OSError, ValueError):
        return 0.0


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def evict(keep: set[Path], *, limit: int | None = None) -> list[Path]:
    """Remove the least recently used series until the cache fits ``limit`` bytes.

    Series in ``keep`` (in use now) stay even when they alone are over the limit.

    Returns
    -------
    list of Path
        The series folders removed.
    """
    limit = cache_limit_bytes() if limit is None else limit
    root = cache_root()
    if not root.is_dir():
        return []
    series = [
        s
        for server in root.iterdir()
        if server.is_dir()
        for study in server.iterdir()
        if study.is_dir()
        for s in study.iterdir()
        if s.is_dir()
    ]
    sizes = {s: _size(s) for s in series}
    total = sum(sizes.values())
    removed: list[Path] = []
    keep = {k.resolve() for k in keep}
    for folder in sorted(series, key=_used_at):
        if total <= limit:
            break
        if folder.resolve() in keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # the study folder, once empty
    return removed
