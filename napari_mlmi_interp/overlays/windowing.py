"""Window/level presets for the scan layer, as radiology viewers offer them.

CT windows are (level, width) in Hounsfield units, the values the issue and common PACS
defaults use (brain 40/80, subdural 75/215, stroke 40/40, bone 600/2800, lung −600/1500,
abdomen 40/400, liver 60/160); the display runs from ``level − width/2`` to
``level + width/2``. For MR (and any scan without HU) "auto" is the robust percentile window
:func:`~napari_mlmi_interp.overlays.volume_layers.contrast_limits` gives a new layer; "source"
is the window the DICOM header carried (the default when there is one). Public napari API
only: ``contrast_limits_range`` widened to the window, then ``contrast_limits``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..io.volume import Volume

__all__ = ["CT_WINDOWS", "apply_window", "window_choices", "window_limits"]

#: CT windows, (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (600.0, 2800.0),
    "lung": (-600.0, 1500.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
}


def window_choices(volume: Volume) -> list[str]:
    """The windows offered for ``volume``: "source" (when its header had one), "auto", and for
    CT the :data:`CT_WINDOWS`."""
    names = ["source"] if volume.window is not None and volume.window[1] > 0 else []
    names.append("auto")
    if volume.modality == "CT":
        names += list(CT_WINDOWS)
    return names


def window_limits(volume: Volume, name: str) -> tuple[float, float]:
    """The display range (low, high) of window ``name`` for ``volume``.

    Raises
    ------
    InputError
        An unknown window, or a CT window for a scan that is not CT (its values are not HU).
    """
    from .volume_layers import contrast_limits

    if name == "source":
        if volume.window is None or not volume.window[1] > 0:
            raise InputError("this scan's header carries no window")
        level, width = volume.window
    elif name == "auto":
        # robust percentiles of the voxels (a copy on the same grid carries no header window)
        return contrast_limits(volume.with_array(volume.array))
    elif name in CT_WINDOWS:
        if volume.modality != "CT":
            raise InputError(
                f"the {name} window is in Hounsfield units; this scan is {volume.modality}, not CT"
            )
        level, width = CT_WINDOWS[name]
    else:
        raise InputError(f"unknown window {name!r}; windows: source, auto, {', '.join(CT_WINDOWS)}")
    return float(level - width / 2), float(level + width / 2)


def apply_window(layer: Any, volume: Volume, name: str) -> tuple[float, float]:
    """Show ``layer`` (an image layer of ``volume``) in window ``name``; returns the limits set."""
    low, high = window_limits(volume, name)
    current_low, current_high = layer.contrast_limits_range
    layer.contrast_limits_range = (min(current_low, low), max(current_high, high))
    layer.contrast_limits = (low, high)
    return low, high
