"""npe2 reader: DICOM folders/files, NIfTI, MHA/MHD, NRRD -> layers in LPS millimetres."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .io import LoadError, LoadWarning, can_load, load
from .io.dicom import is_dicom_file
from .io.formats import image_suffix

__all__ = ["get_reader", "read_layers"]

# How many entries of a folder the cheap check looks at before giving up.
_PEEK = 200


def _folder_looks_loadable(folder: Path) -> bool:
    """Look at no more than _PEEK files (walking lazily, so a huge tree costs nothing more)."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            if image_suffix(p) or p.suffix.lower() in (".dcm", ".ima") or is_dicom_file(p):
                return True
            seen += 1
            if seen >= _PEEK:
                return False
    # An empty folder is handed to us so the user is told it is empty, not "no reader".
    return seen == 0


def get_reader(path: str | list[str]) -> Any:
    """Return :func:`read_layers` if ``path`` looks like a scan we read, else None.

    Cheap: it reads at most a few bytes of a few files and never raises.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        p = Path(path)
        if p.is_dir():
            return read_layers if _folder_looks_loadable(p) else None
        return read_layers if can_load(p) else None
    except OSError:
        return None


def _notify(kind: str, message: str) -> None:
    from napari.utils.notifications import show_error, show_warning

    (show_error if kind == "error" else show_warning)(message)


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read ``path`` into one layer per volume; problems become one readable notification."""
    from .overlays import volume_layer_data

    if isinstance(path, list):
        path = path[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        try:
            volumes = load(path)
        except LoadError as exc:
            _notify("error", f"Cannot open scan — {exc}")
            return [(None,)]
        except MemoryError:
            _notify("error", f"Cannot open scan — {path}: not enough memory to load it")
            return [(None,)]
    for w in caught:
        if issubclass(w.category, LoadWarning):
            _notify("warning", str(w.message))
    layers = [volume_layer_data(v) for v in volumes]
    _arrange_when_added(volumes)
    return layers


def _arrange_when_added(volumes: list) -> None:
    """Once our layers land in an empty viewer, show them in the acquisition plane."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # pragma: no cover - no viewer (scripted use)
        return
    if viewer is None or len(viewer.layers) > 0 or not volumes:
        return
    from .overlays import set_radiological_view

    plane = volumes[0].geometry.acquisition_plane()

    def _on_inserted(event: Any = None) -> None:
        viewer.layers.events.inserted.disconnect(_on_inserted)
        set_radiological_view(viewer, plane)
        layer = viewer.layers[-1]
        # start in the middle slice of the scan
        centre = volumes[0].geometry.to_lps([(s - 1) / 2 for s in volumes[0].shape])
        if layer.ndim == 3:
            viewer.dims.point = tuple(centre)

    viewer.layers.events.inserted.connect(_on_inserted)
