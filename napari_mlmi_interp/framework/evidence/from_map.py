"""Evidence from a map alone: localization, visual recognizability, physical attribution.

Cheap (no model): it runs again whenever the reader redraws the true region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ... import metrics as M
from ...errors import InputError
from ..settings import DEFAULT_SETTINGS, FigureSettings
from .assessment import Assessment
from .bands import Band, linked_bands
from .figures import LOCALIZATION_FIGURES, Figure, figure_label, judged

__all__ = ["EXPLAINED_ROI_NOTE", "against_explained_roi", "map_evidence"]

#: The localization figures' note when the true region is the ROI the map was asked about.
EXPLAINED_ROI_NOTE = (
    "the true region is the ROI this map explains (class T inside it): these figures say how "
    "much of the evidence lies in the structure itself rather than in its context, not "
    "whether the model found the structure"
)


def map_evidence(
    attribution: Any,
    *,
    roi: np.ndarray | None = None,
    scan: Any = None,
    labels: np.ndarray | None = None,
    label_names: Mapping[int, str] | list[str] | None = None,
    percent: float | None = None,
    tolerance_mm: float | None = None,
    region_fraction: float = 0.5,
    bands: Mapping[str, Band] | None = None,
    settings: FigureSettings = DEFAULT_SETTINGS,
) -> Assessment:
    """Localization, visual recognizability and physical attribution of one map.

    Parameters
    ----------
    attribution : Volume
        The map on a grid with geometry (the native map of an explanation, or a NIfTI).
    roi : array, optional
        The true region on the same grid; without it the localization figures are n/a.
    scan : Volume, optional
        The scan on the same grid, for intensity statistics (HU for CT).
    labels : array, optional
        An anatomical label map on the same grid, for attribution mass per structure.
    percent : float, optional
        k of the top-k % region (the contour); ``settings.topk_percent`` by default.
    tolerance_mm : float, optional
        Pointing-game tolerance in mm, also the pass limit of the peak-to-region distance;
        ``settings.tolerance_mm`` by default.
    region_fraction : float
        Share of the positive attribution that defines the attributed region.
    settings : FigureSettings
        The figure settings (:data:`~napari_mlmi_interp.framework.settings.DEFAULT_SETTINGS`,
        shared by the sidebar, ``evaluate`` and ``batch``); ``percent`` and ``tolerance_mm``
        override them.

    Raises
    ------
    InputError
        When the true region or the scan is not on the map's grid (a ``ValueError`` too).
    """
    settings = settings.with_(topk_percent=percent, tolerance_mm=tolerance_mm)
    bands = linked_bands(bands, settings)
    a = np.asarray(attribution.array, dtype=np.float64)
    m = None
    if roi is not None:
        m = np.asarray(roi) > 0
        if m.shape != a.shape:
            raise InputError(f"the true region {m.shape} and the map {a.shape} must be on the same grid")
    figs = _localization(a, m, attribution.geometry.spacing, bands, settings)
    figs.update(_recognizability(a, bands, settings))
    affine = attribution.geometry.index_to_lps
    figs.update(_physical(a, affine, scan, labels, label_names, region_fraction, bands, settings))
    return Assessment(figs, settings={**settings.to_dict(), "region_fraction": region_fraction})


def _localization(
    a: np.ndarray,
    m: np.ndarray | None,
    spacing: Any,
    bands: Mapping[str, Band],
    settings: FigureSettings,
) -> dict[str, Figure]:
    """The localization figures of map ``a`` against the true region ``m`` (n/a without one)."""
    percent, tolerance_mm = float(settings.topk_percent), float(settings.tolerance_mm)
    if m is None or not m.any():
        why = "draw or load the true region" if m is None else "the true region is empty"
        return {
            key: Figure(key, None, "n/a", why, figure_label(key, settings)) for key in LOCALIZATION_FIGURES
        }
    figs: dict[str, Figure] = {}

    def add(key: str, value: Any) -> None:
        figs[key] = judged(key, value, bands, "", settings)

    # one distance, one tolerance: the pointing game hits exactly when the distance passes
    distance = M.peak_to_roi_mm(a, m, spacing)
    add("pointing_game", bool(distance <= tolerance_mm))
    figs["pointing_game"].rule = f"pass = hit (peak within {tolerance_mm:g} mm of the region)"
    add("peak_to_roi_mm", distance)
    add("relevance_mass_accuracy", M.relevance_mass_accuracy(a, m))
    add("relevance_rank_accuracy", M.relevance_rank_accuracy(a, m))
    add("auroc", M.roi_auroc(a, m) if not m.all() else None)
    add("topk_dice", M.topk_dice(a, m, percent))
    add("topk_iou", M.topk_iou(a, m, percent))
    # Dice of a region many times larger (or smaller) than the true one is low whatever
    # the map does: judge it only when the sizes are comparable, and say which k would be
    top = int(M.topk_mask(a, percent).sum())
    ratio = top / int(m.sum())
    if not 0.25 <= ratio <= 4:
        fit = 100.0 * m.sum() / m.size
        note = (
            f"the top {percent:g} % region is {ratio:.3g} x the true region; k = {fit:.2g} % matches its size"
        )
        for key in ("topk_dice", "topk_iou"):
            figs[key] = replace(figs[key], band="info", note=note)
    figs["topk_iou"].band = figs["topk_dice"].band  # one overlap, one band
    return figs


def _recognizability(a: np.ndarray, bands: Mapping[str, Band], settings: FigureSettings) -> dict[str, Figure]:
    """Compactness of map ``a``: blobs holding 90 % of it, sparseness, entropy."""
    return {
        "components_90": judged("components_90", M.components(a, 0.9), bands, "", settings),
        "gini": judged("gini", M.gini(a), bands, "", settings),
        "entropy": judged("entropy", M.normalized_entropy(a), bands, "", settings),
    }


def _physical(
    a: np.ndarray,
    affine: np.ndarray,
    scan: Any,
    labels: np.ndarray | None,
    label_names: Mapping[int, str] | list[str] | None,
    region_fraction: float,
    bands: Mapping[str, Band],
    settings: FigureSettings,
) -> dict[str, Figure]:
    """Where map ``a`` points in the patient (LPS mm, mL), what lies there (scan values, labels)."""
    figs: dict[str, Figure] = {}

    def add(key: str, value: Any, note: str = "") -> None:
        figs[key] = judged(key, value, bands, note, settings)

    region = M.mass_region(a, region_fraction)
    add("peak_lps_mm", M.peak_lps(a, affine))
    centroid = M.centroid_lps(a, affine, region)
    add("centroid_lps_mm", centroid, "" if centroid is not None else "no positive attribution")
    add("region_volume_ml", M.region_volume_ml(region, affine))
    add("region_extent_mm", M.region_extent_mm(region, affine))
    if scan is not None:
        if tuple(scan.shape) != a.shape:
            raise InputError(f"the scan {scan.shape} and the map {a.shape} must be on the same grid")
        stats = M.intensity_stats(scan.array, region)
        if stats is not None and getattr(scan, "units", ""):
            stats = {**stats, "units": scan.units}
        add("intensity", stats, "" if stats else "empty region")
    if labels is not None:
        add("label_mass", M.mass_per_label(a, np.asarray(labels), label_names))
    return figs


def against_explained_roi(assessment: Any, region: Any, explained: Any) -> Any:
    """``assessment`` with the localization figures noted when ``region`` is the explained ROI.

    A segmenter's map of "class T inside M" judged against M itself is a different question
    from a classifier's map judged against an independent lesion mask; the figures keep their
    values and bands, and say so (:data:`EXPLAINED_ROI_NOTE`), in every panel and file.
    """
    if region is None or explained is None:
        return assessment
    region_array = np.asarray(getattr(region, "array", region)) > 0
    explained_array = np.asarray(explained) > 0
    if region_array.shape != explained_array.shape or not np.array_equal(region_array, explained_array):
        return assessment
    for figure in assessment.by_element()["localization"]:
        figure.note = f"{figure.note}; {EXPLAINED_ROI_NOTE}" if figure.note else EXPLAINED_ROI_NOTE
    assessment.settings["localization_region"] = "the explained ROI"
    return assessment
