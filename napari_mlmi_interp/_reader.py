"""npe2 reader: DICOM folders/files, NIfTI, MHA/MHD, NRRD, DICOMweb URLs -> layers in LPS millimetres."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .io import LoadError, LoadWarning, can_load, is_dicomweb_url, load
from .io.dicom import is_dicom_file
from .io.formats import image_suffix

__all__ = ["get_reader", "load_messages", "read_layers", "series_label"]

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
    if is_dicomweb_url(path):  # a DICOMweb study or series: whether the server has it is load's to say
        return read_layers
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


def series_label(volume: Any) -> str:
    """How a notification names a volume's series: ``series 4 'T1 MPRAGE'``, else its name."""
    meta = getattr(volume, "metadata", None) or {}
    number, description = meta.get("SeriesNumber"), meta.get("SeriesDescription")
    if number not in (None, "") and description:
        return f"series {number} '{description}'"
    return f"'{volume.name}'"


def load_messages(caught: list[str], volumes: list) -> list[str]:
    """Each load warning once: the loader's warnings, then each series' own notes, named.

    Parameters
    ----------
    caught : list of str
        Texts of the :class:`LoadWarning` s raised while loading (folder-level notes such
        as skipped files, or per-series notes when the loader names the series itself).
    volumes : list of Volume
        The volumes read; ``volume.warnings`` holds each one's notes.

    Returns
    -------
    list of str
        ``caught`` without repeats, then every series' notes, each once per series (a note
        repeated on several volumes of one series, echoes or repeats, is said once) and
        named (``"<series>: <note>"`` unless the note names its series already); a note
        that a loader warning already says is not said again.
    """
    said = list(dict.fromkeys(caught))
    out = list(said)
    seen: set[tuple[str, str]] = set()
    for volume in volumes:
        label = series_label(volume)
        series = (getattr(volume, "references", None) or {}).get("SeriesInstanceUID") or label
        for note in volume.warnings:
            if (series, note) in seen or any(note in m for m in said):
                continue
            seen.add((series, note))
            named = label in note or volume.name in note or label.replace("'", "") in note
            out.append(note if named else f"{label}: {note}")
    return out


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read ``path`` into one layer per volume; problems become one readable notification."""
    from .overlays.volume_layers import arrange_when_added, volume_layer_data

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
    texts = [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]
    for message in load_messages(texts, volumes):
        _notify("warning", message)
    layers = [volume_layer_data(v) for v in volumes]
    if volumes:
        arrange_when_added(volumes[0])
    return layers
