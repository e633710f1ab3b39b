"""Score attribution maps from files (ours or another tool's): the ``evaluate`` command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import load
from ..io.volume import Volume
from ..models.preprocessing import resample_to_grid
from .evidence import Assessment, Band, map_evidence

__all__ = ["evaluate_files", "flat_figures", "on_grid_of"]


def _one(path: str | os.PathLike[str], what: str) -> Volume:
    volumes = load(path)
    if len(volumes) != 1:
        raise InputError(f"{path}: the {what} must be one volume, found {len(volumes)}")
    return volumes[0]


def on_grid_of(volume: Volume, reference: Volume, *, labels: bool, what: str, notes: list[str]) -> np.ndarray:
    """``volume``'s array on ``reference``'s grid (resampled by LPS position when they differ)."""
    if volume.geometry.same_grid(reference.geometry, atol_mm=1e-3):
        return volume.array
    corners = np.array([[0, 0, 0], [s - 1 for s in reference.shape]])
    inside = volume.geometry.to_index(reference.geometry.to_lps(corners))
    if np.all(inside < -0.5) or np.all(inside > np.array(volume.shape) - 0.5):
        raise InputError(f"the {what} does not overlap the map in patient space")
    notes.append(
        f"the {what} ({'x'.join(map(str, volume.shape))}) was resampled onto the map's grid "
        f"({'x'.join(map(str, reference.shape))}) by patient position"
        + (" (nearest neighbour)" if labels else " (linear)")
    )
    return resample_to_grid(
        volume.array, volume.geometry, reference.geometry, interpolation="nearest" if labels else "linear"
    )


def evaluate_files(
    map_path: str | os.PathLike[str],
    roi_path: str | os.PathLike[str] | None = None,
    *,
    scan_path: str | os.PathLike[str] | None = None,
    labels_path: str | os.PathLike[str] | None = None,
    percent: float | None = None,
    tolerance_mm: float | None = None,
    bands: Mapping[str, Band] | None = None,
) -> tuple[Assessment, list[str]]:
    """:func:`map_evidence` of a map file against an ROI file (and a scan, a label map).

    ``percent`` and ``tolerance_mm`` default to the shared figure settings
    (:data:`~.settings.DEFAULT_SETTINGS`: top 1 %, 5 mm), as in the sidebar and ``batch``.

    The ROI, scan and label map may lie on other grids than the map (a 2 mm map of a 1 mm
    scan): they are resampled onto the map's grid by patient position, and a note says so.
    Returns the assessment and those notes.
    """
    amap = _one(map_path, "map")
    notes: list[str] = []
    roi = scan = labels = None
    if roi_path is not None:
        roi = on_grid_of(_one(roi_path, "ROI"), amap, labels=True, what="ROI", notes=notes) > 0
        if not roi.any():
            raise InputError(f"{roi_path}: the ROI is empty on the map's grid")
    if scan_path is not None:
        s = _one(scan_path, "scan")
        array = np.asarray(on_grid_of(s, amap, labels=False, what="scan", notes=notes))
        scan = Volume(array, amap.geometry, modality=s.modality, units=s.units)
    if labels_path is not None:
        labels = on_grid_of(_one(labels_path, "label map"), amap, labels=True, what="label map", notes=notes)
    result = map_evidence(
        amap, roi=roi, scan=scan, labels=labels, percent=percent, tolerance_mm=tolerance_mm, bands=bands
    )
    return result, notes


def flat_figures(assessment: Assessment) -> dict[str, Any]:
    """``{figure: value}`` for all figures (JSON-ready), beside the nested form."""
    return {
        k: v
        for e, figs in assessment.to_dict().items()
        if e not in ("bands", "curves", "settings")
        for k, v in figs.items()
    }
