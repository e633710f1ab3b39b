"""Loaded models held once per process, keyed by the sha256 of their weights.

A heatmap layer (or a study item, or a panel) refers to the model that made it by its key,
:attr:`LoadedModel.sha256`, instead of carrying the torch module itself: the module lives
here once, however many layers point at it. Pure: no napari, no Qt.

Examples
--------
>>> from napari_mlmi_interp.models.held import HeldModels
>>> held = HeldModels()
>>> held.get(None) is None, len(held)
(True, 0)
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .loading import LoadedModel

__all__ = ["HeldModels", "held_models"]


class HeldModels:
    """Loaded models keyed by the sha256 of their weights (thread-safe).

    Models are loaded in worker threads and read on the GUI thread, so every access takes
    one lock. :meth:`resolve` also remembers which name or path gave which key, so a model
    chosen again by name is not read from disk again (a file is, once it has been rewritten).
    """

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._by_source: dict[str, str] = {}
        self._lock = threading.Lock()

    def hold(self, model: LoadedModel) -> str:
        """Keep ``model``; returns its key (``model.sha256``).

        A second model with the same weights keeps the first one held (same key).
        """
        key = str(model.sha256)
        with self._lock:
            self._models.setdefault(key, model)
        return key

    def get(self, key: str | None) -> LoadedModel | None:
        """The model held under ``key``; None for an unknown key or ``None``."""
        if key is None:
            return None
        with self._lock:
            return self._models.get(key)

    def resolve(self, source: str | os.PathLike[str]) -> LoadedModel:
        """The model a registered name or a spec/weights path names, loaded once and held.

        Raises
        ------
        ModelError
            As :func:`~napari_mlmi_interp.models.resolve_model` does (unknown name,
            unreadable file, architecture mismatch).
        """
        name = _source_key(source)
        with self._lock:
            key = self._by_source.get(name)
            model = self._models.get(key) if key is not None else None
        if model is not None:
            return model
        from .registry import resolve_model

        model = resolve_model(os.fspath(source))  # read and built outside the lock: it takes seconds
        key = self.hold(model)
        with self._lock:
            self._by_source[name] = key
            return self._models[key]

    def key_for(self, source: str | os.PathLike[str]) -> str | None:
        """The key of the model :meth:`resolve` loaded for ``source`` (None if not loaded yet)."""
        with self._lock:
            key = self._by_source.get(_source_key(source))
            return key if key in self._models else None

    def release(self, key: str) -> None:
        """Forget the model under ``key`` (and the names that led to it); no error if absent."""
        with self._lock:
            self._models.pop(key, None)
            for name in [n for n, k in self._by_source.items() if k == key]:
                del self._by_source[name]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._models

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)


def _source_key(source: str | os.PathLike[str]) -> str:
    """What :meth:`HeldModels.resolve` remembers a source by: a registered name as it is, a
    file by its path and modification time, so weights rewritten in place are read again."""
    name = os.fspath(source)
    try:
        return f"{name}@{os.stat(name).st_mtime_ns}"
    except OSError:  # a registered name (or a file that is gone: resolve_model says so)
        return name


_HELD = HeldModels()


def held_models() -> HeldModels:
    """The process-wide registry (the one the panels, layers and reader studies share)."""
    return _HELD
