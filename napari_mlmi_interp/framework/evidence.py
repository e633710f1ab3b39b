"""Evidence per element: the metrics as figures with definitions and pass/warn/fail bands.

:func:`map_evidence` needs only a map (and optionally the true region, the scan and a label
map): localization, visual recognizability and physical attribution. It is cheap and runs
again whenever the reader redraws the true region. :func:`model_evidence` runs the model:
model transparency (deletion/insertion, cascading randomisation, infidelity) and
actionability (region removal, test-time augmentation). Every figure carries its definition
(hover text in the sidebar) and a band from :data:`DEFAULT_BANDS`, which a study can override.

The parameters behind the figures (k of the top-k % region, the pointing-game tolerance, the
faithfulness baseline) come from one :class:`~.settings.FigureSettings`, shown in the
figures' labels and notes and stored beside them. No two bands on one map contradict: the
figures that measure one thing share one threshold (:func:`linked_bands`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from ..vocabulary import ELEMENTS
from .settings import DEFAULT_SETTINGS, FigureSettings

__all__ = [
    "DEFAULT_BANDS",
    "FIGURES",
    "LOCALIZATION_FIGURES",
    "Assessment",
    "Band",
    "Figure",
    "figure_label",
    "linked_bands",
    "load_bands",
    "map_evidence",
    "model_evidence",
]


@dataclass(frozen=True)
class Band:
    """Thresholds for one figure: ``pass`` at or beyond ``pass_at``, ``warn`` at or beyond ``warn_at``."""

    higher_is_better: bool
    pass_at: float
    warn_at: float

    def judge(self, value: float | None) -> str:
        if value is None or not np.isfinite(value):
            return "n/a"
        v = float(value)
        if self.higher_is_better:
            return "pass" if v >= self.pass_at else "warn" if v >= self.warn_at else "fail"
        return "pass" if v <= self.pass_at else "warn" if v <= self.warn_at else "fail"

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"pass {op} {self.pass_at:g}, warn {op} {self.warn_at:g}"


#: Default bands. Localization thresholds assume a focal finding; the recognizability ones
#: were set on the demo zoo (a class-map Grad-CAM on a lesion: 1 component, Gini 0.97; an
#: IG map: Gini 0.8, scattered) and are meant to be tuned per study (:func:`load_bands`).
DEFAULT_BANDS: dict[str, Band] = {
    "pointing_game": Band(True, 1.0, 1.0),
    "peak_to_roi_mm": Band(False, 5.0, 15.0),
    "relevance_mass_accuracy": Band(True, 0.3, 0.1),
    "relevance_rank_accuracy": Band(True, 0.3, 0.1),
    "auroc": Band(True, 0.9, 0.75),
    "topk_dice": Band(True, 0.3, 0.1),
    "topk_iou": Band(True, 0.2, 0.05),
    "components_90": Band(False, 3.0, 10.0),
    "gini": Band(True, 0.8, 0.6),
    "entropy": Band(False, 0.85, 0.95),
    "deletion_auc": Band(False, 0.3, 0.5),
    "insertion_auc": Band(True, 0.7, 0.5),
    "randomisation_final_rho": Band(False, 0.3, 0.6),
    "prediction_drop": Band(True, 0.3, 0.1),
    "tta_sd": Band(False, 0.05, 0.15),
}


def load_bands(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Band]:
    """:data:`DEFAULT_BANDS` updated from a JSON file or mapping ``{key: {"pass": x, "warn": y}}``.

    ``"higher_is_better"`` may be given too; unknown keys are an error (a typo would
    otherwise be silently ignored).

    Bands that follow another setting cannot be set here, so that no two bands on one map
    contradict (see :func:`linked_bands`): ``pointing_game`` (hit or miss), the ``pass`` of
    ``peak_to_roi_mm`` (it is the tolerance: set ``tolerance_mm`` instead) and ``topk_iou``
    (it follows ``topk_dice``).
    """
    bands = dict(DEFAULT_BANDS)
    if source is None:
        return bands
    data = source if isinstance(source, Mapping) else json.loads(Path(source).read_text())
    for key, spec in data.items():
        if key not in FIGURES:
            raise ValueError(f"no figure called {key!r}; figures: {', '.join(FIGURES)}")
        if key == "pointing_game":
            raise ValueError(
                "the pointing_game band cannot be set (a hit passes, a miss fails); "
                "its tolerance is tolerance_mm (--tolerance-mm)"
            )
        if key == "peak_to_roi_mm" and "pass" in spec:
            raise ValueError(
                "the pass limit of peak_to_roi_mm is the pointing-game tolerance: set tolerance_mm "
                f"(--tolerance-mm) instead of 'pass', got pass = {spec['pass']}"
            )
        if key == "topk_iou":
            raise ValueError(
                "the topk_iou band follows topk_dice's (IoU = Dice / (2 - Dice)): set topk_dice instead"
            )
        old = bands.get(key, Band(True, 0.0, 0.0))
        bands[key] = Band(
            bool(spec.get("higher_is_better", old.higher_is_better)),
            float(spec.get("pass", old.pass_at)),
            float(spec.get("warn", old.warn_at)),
        )
    return bands


def linked_bands(
    bands: Mapping[str, Band] | None = None, settings: FigureSettings = DEFAULT_SETTINGS
) -> dict[str, Band]:
    """``bands`` with the linked pairs made to agree, so no two bands on one map contradict.

    - ``pointing_game`` and ``peak_to_roi_mm``: both judge the distance from the map's peak
      to the true region against ``settings.tolerance_mm``: the pointing game hits, and the
      distance passes, exactly when it is <= the tolerance (the distance's warn limit stays
      its own, at least the tolerance).
    - ``topk_dice`` and ``topk_iou``: one overlap, two scales (IoU = Dice / (2 - Dice)); the
      IoU band is the Dice band carried over, so the two always share a band.
    """
    out = dict(bands or DEFAULT_BANDS)
    tol = float(settings.tolerance_mm)
    out["pointing_game"] = Band(True, 1.0, 1.0)
    peak = out.get("peak_to_roi_mm", DEFAULT_BANDS["peak_to_roi_mm"])
    out["peak_to_roi_mm"] = Band(False, tol, max(float(peak.warn_at), tol))
    dice = out.get("topk_dice", DEFAULT_BANDS["topk_dice"])
    out["topk_iou"] = Band(True, dice.pass_at / (2 - dice.pass_at), dice.warn_at / (2 - dice.warn_at))
    return out


def figure_label(key: str, settings: FigureSettings = DEFAULT_SETTINGS) -> str:
    """A figure's label with the setting it depends on, e.g. ``"top-1 % Dice"``."""
    label = FIGURES[key].label
    if "top-k" in label:
        label = label.replace("top-k", f"top-{settings.topk_percent:g} %")
    if key == "pointing_game":
        label = f"{label} ({settings.tolerance_mm:g} mm)"
    return label


#: The localization figures, in the order the sidebar and the exports list them.
LOCALIZATION_FIGURES = (
    "pointing_game",
    "peak_to_roi_mm",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "auroc",
    "topk_dice",
    "topk_iou",
)


@dataclass(frozen=True)
class FigureInfo:
    element: str
    label: str
    unit: str
    definition: str


#: Every figure: element, label, unit, one-sentence definition (shown on hover).
FIGURES: dict[str, FigureInfo] = {
    "pointing_game": FigureInfo(
        "localization",
        "pointing game",
        "",
        "Hit when the map's maximum (its largest value) lies inside the true region or within "
        "the tolerance in mm of it (Zhang et al. 2016); the same distance as peak to region.",
    ),
    "peak_to_roi_mm": FigureInfo(
        "localization",
        "peak to region",
        "mm",
        "Distance in mm from the map's maximum (its largest value) to the nearest voxel of the "
        "true region (0 inside); passes within the pointing-game tolerance.",
    ),
    "relevance_mass_accuracy": FigureInfo(
        "localization",
        "relevance mass",
        "",
        "Share of all positive attribution that falls inside the true region (Arras et al. 2022).",
    ),
    "relevance_rank_accuracy": FigureInfo(
        "localization",
        "relevance rank",
        "",
        "Of the K most attributed voxels (K = size of the true region), the share inside it.",
    ),
    "auroc": FigureInfo(
        "localization",
        "AUROC map vs region",
        "",
        "How well the map's values separate voxels inside the true region from the rest (0.5 = chance).",
    ),
    "topk_dice": FigureInfo(
        "localization",
        "top-k Dice",
        "",
        "Dice overlap of the top-k % most attributed voxels (the contour) with the true region.",
    ),
    "topk_iou": FigureInfo(
        "localization",
        "top-k IoU",
        "",
        "Intersection over union of the top-k % region with the true region.",
    ),
    "components_90": FigureInfo(
        "visual_recognizability",
        "blobs holding 90 %",
        "",
        "Connected components of the smallest voxel set holding 90 % of the positive attribution.",
    ),
    "gini": FigureInfo(
        "visual_recognizability",
        "sparseness (Gini)",
        "",
        "Gini index of |attribution|: 0 when spread evenly, near 1 when concentrated in few voxels.",
    ),
    "entropy": FigureInfo(
        "visual_recognizability",
        "entropy",
        "",
        "Shannon entropy of |attribution| normalised by its maximum: 1 flat, 0 a single voxel.",
    ),
    "peak_lps_mm": FigureInfo(
        "physical_attribution",
        "peak (LPS)",
        "mm",
        "Patient position (left, posterior, superior) of the map's maximum.",
    ),
    "centroid_lps_mm": FigureInfo(
        "physical_attribution",
        "centroid (LPS)",
        "mm",
        "Attribution-weighted centre of the attributed region, in patient coordinates.",
    ),
    "region_volume_ml": FigureInfo(
        "physical_attribution",
        "attributed volume",
        "mL",
        "Volume of the smallest voxel set holding half of the positive attribution.",
    ),
    "region_extent_mm": FigureInfo(
        "physical_attribution",
        "extent (L, P, S)",
        "mm",
        "Size of the attributed region's bounding box along left, posterior and superior.",
    ),
    "intensity": FigureInfo(
        "physical_attribution",
        "intensity inside",
        "",
        "Scan values inside the attributed region (HU for CT): mean, SD, median, 5th-95th percentile.",
    ),
    "label_mass": FigureInfo(
        "physical_attribution",
        "attribution per structure",
        "",
        "Share of the positive attribution in each structure of the loaded label map.",
    ),
    "model_kind": FigureInfo(
        "model_transparency",
        "model",
        "",
        "Prototype networks explain by design ('this looks like that'); other models are "
        "black boxes explained after the fact.",
    ),
    "deletion_auc": FigureInfo(
        "model_transparency",
        "deletion AUC",
        "",
        "Area under the score as the most attributed voxels are replaced by the baseline, "
        "most attributed first (lower = more faithful; Petsiuk et al. 2018). The curve need "
        "not fall steadily: a partly replaced scan is an image the model never saw, and a "
        "bump means its score rose again on that mix; read the area, not single points.",
    ),
    "insertion_auc": FigureInfo(
        "model_transparency",
        "insertion AUC",
        "",
        "Area under the score as the most attributed voxels are restored into the baseline, "
        "most attributed first (higher = more faithful). Same baseline as deletion; a curve "
        "that is not monotonic says the model reacts to the mix of scan and baseline.",
    ),
    "randomisation_final_rho": FigureInfo(
        "model_transparency",
        "randomisation rank corr.",
        "",
        "Spearman correlation of the map with the map of a fully randomised model; a "
        "faithful map changes (low value; Adebayo et al. 2018).",
    ),
    "infidelity": FigureInfo(
        "model_transparency",
        "infidelity",
        "",
        "Mean squared error between the map's predicted and the model's actual score change "
        "under random perturbations, after best scaling (Yeh et al. 2019; Captum). Lower is "
        "better; compare methods on one model.",
    ),
    "prediction_drop": FigureInfo(
        "actionability",
        "score drop without top-k region",
        "",
        "Target probability lost when the top-k % region is replaced by the baseline: the "
        "finding the map shows is what drives the decision.",
    ),
    "confidence": FigureInfo(
        "actionability",
        "confidence",
        "",
        "Probability of the explained class on this scan.",
    ),
    "tta_sd": FigureInfo(
        "actionability",
        "spread under augmentation",
        "",
        "SD of the probability under small shifts, intensity changes and noise; a wide "
        "spread is a cue to refer.",
    ),
}


@dataclass
class Figure:
    """One figure of evidence."""

    key: str
    value: Any
    band: str = "info"
    note: str = ""
    #: The label as shown, with its setting ("top-1 % Dice"); the generic label by default.
    label: str = ""
    #: The band it was judged by, in words ("pass <= 5, warn <= 15"); empty without a band.
    rule: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = FIGURES[self.key].label

    @property
    def info(self) -> FigureInfo:
        return FIGURES[self.key]

    @property
    def element(self) -> str:
        return self.info.element

    def text(self) -> str:
        """The value as a reader sees it, with its unit."""
        v, unit = self.value, self.info.unit
        if v is None:
            return self.note or "n/a"
        if isinstance(v, bool):
            return "hit" if v else "miss"
        if isinstance(v, str):
            return v
        if isinstance(v, dict):
            return ", ".join(f"{k} {_num(x)}" for k, x in list(v.items())[:4])
        if isinstance(v, list | tuple | np.ndarray):
            return "(" + ", ".join(_num(x) for x in v) + ")" + (f" {unit}" if unit else "")
        return _num(v) + (f" {unit}" if unit else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _jsonable(self.value),
            "band": self.band,
            **({"note": self.note} if self.note else {}),
        }


def _num(x: Any) -> str:
    x = float(x)
    if x == 0 or 0.01 <= abs(x) < 1e4:
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.1f}"
    return f"{x:.2e}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [round(float(x), 4) for x in v]
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    return round(float(v), 6)


@dataclass
class Assessment:
    """Figures for the five elements, plus the curves behind them."""

    figures: dict[str, Figure] = field(default_factory=dict)
    curves: dict[str, dict[str, list]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def by_element(self) -> dict[str, list[Figure]]:
        out: dict[str, list[Figure]] = {e: [] for e in ELEMENTS}
        for f in self.figures.values():
            out[f.element].append(f)
        return out

    def __getitem__(self, key: str) -> Figure:
        return self.figures[key]

    def __contains__(self, key: str) -> bool:
        return key in self.figures

    def merged(self, other: Assessment) -> Assessment:
        return Assessment(
            {**self.figures, **other.figures},
            {**self.curves, **other.curves},
            {**self.settings, **other.settings},
        )

    def flagged(self, element: str) -> bool:
        """Whether any figure of ``element`` fails its band."""
        return any(f.band == "fail" for f in self.by_element()[element])

    def to_dict(self) -> dict[str, Any]:
        """``{element: {figure: value}}`` plus ``bands`` and ``curves`` (JSON-ready)."""
        out: dict[str, Any] = {e: {} for e in ELEMENTS}
        for key, f in self.figures.items():
            out[f.element][key] = _jsonable(f.value)
        out["bands"] = {key: f.band for key, f in self.figures.items()}
        out["curves"] = _jsonable(self.curves)
        out["settings"] = _jsonable(self.settings)
        return out


def _figure(
    key: str,
    value: Any,
    bands: Mapping[str, Band],
    note: str = "",
    settings: FigureSettings = DEFAULT_SETTINGS,
) -> Figure:
    band = bands[key].judge(None if value is None else float(value)) if key in bands else "info"
    rule = bands[key].describe() if key in bands else ""
    return Figure(key, value, band, note, figure_label(key, settings), rule)


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
        The figure settings (:data:`~.settings.DEFAULT_SETTINGS`, shared by the sidebar,
        ``evaluate`` and ``batch``); ``percent`` and ``tolerance_mm`` override them.
    """
    settings = settings.with_(topk_percent=percent, tolerance_mm=tolerance_mm)
    percent, tolerance_mm = float(settings.topk_percent), float(settings.tolerance_mm)
    bands = linked_bands(bands, settings)
    a = np.asarray(attribution.array, dtype=np.float64)
    g = attribution.geometry
    affine = g.index_to_lps
    figs: dict[str, Figure] = {}

    def add(key: str, value: Any, note: str = "") -> None:
        figs[key] = _figure(key, value, bands, note, settings)

    if roi is not None:
        m = np.asarray(roi) > 0
        if m.shape != a.shape:
            raise ValueError(f"the true region {m.shape} and the map {a.shape} must be on the same grid")
    if roi is not None and m.any():
        # one distance, one tolerance: the pointing game hits exactly when the distance passes
        distance = M.peak_to_roi_mm(a, m, g.spacing)
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
                f"the top {percent:g} % region is {ratio:.3g} x the true region; "
                f"k = {fit:.2g} % matches its size"
            )
            for key in ("topk_dice", "topk_iou"):
                figs[key] = replace(figs[key], band="info", note=note)
        figs["topk_iou"].band = figs["topk_dice"].band  # one overlap, one band
    else:
        why = "draw or load the true region" if roi is None else "the true region is empty"
        for key in LOCALIZATION_FIGURES:
            figs[key] = Figure(key, None, "n/a", why, figure_label(key, settings))
    add("components_90", M.components(a, 0.9))
    add("gini", M.gini(a))
    add("entropy", M.normalized_entropy(a))
    region = M.mass_region(a, region_fraction)
    add("peak_lps_mm", M.peak_lps(a, affine))
    centroid = M.centroid_lps(a, affine, region)
    add("centroid_lps_mm", centroid, "" if centroid is not None else "no positive attribution")
    add("region_volume_ml", M.region_volume_ml(region, affine))
    add("region_extent_mm", M.region_extent_mm(region, affine))
    if scan is not None:
        if tuple(scan.shape) != a.shape:
            raise ValueError(f"the scan {scan.shape} and the map {a.shape} must be on the same grid")
        stats = M.intensity_stats(scan.array, region)
        if stats is not None and getattr(scan, "units", ""):
            stats = {**stats, "units": scan.units}
        add("intensity", stats, "" if stats else "empty region")
    if labels is not None:
        add("label_mass", M.mass_per_label(a, np.asarray(labels), label_names))
    return Assessment(figs, settings={**settings.to_dict(), "region_fraction": region_fraction})


_LOCAL_METHODS = {"saliency", "guided_backprop", "deconvolution", "guided_gradcam", "smoothgrad"}


def score_function(model: Any, class_index: int) -> Callable[[Any], Any]:
    """``batch -> probability of class_index`` for a classification model (softmax or sigmoid)."""
    import torch

    module = model.module

    def forward(x: Any) -> Any:
        logits = module(x).reshape(x.shape[0], -1)
        if logits.shape[1] == 1:  # one logit: p(present)
            p = torch.sigmoid(logits[:, 0])
            return p if class_index == 1 else 1 - p
        return torch.softmax(logits, dim=1)[:, class_index]

    return forward


def model_evidence(
    explanation: Any,
    model: Any,
    *,
    percent: float | None = None,
    steps: int = 20,
    baseline: Any = None,
    randomisation_stages: int = 5,
    infidelity_samples: int = 16,
    tta: int = 8,
    batch_size: int = 4,
    bands: Mapping[str, Band] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Any = None,
    settings: FigureSettings = DEFAULT_SETTINGS,
) -> Assessment:
    """Model transparency and actionability of an explanation: runs the model (seconds to minutes).

    Classification models only for the faithfulness figures (the score is the target
    class's probability); for other models those figures are n/a with the reason.
    ``progress(done, total)`` counts phases; ``cancel`` (a CancelToken) stops between them
    and inside the randomisation runs.

    Parameters
    ----------
    percent : float, optional
        k of the top-k % region removed for the score drop; ``settings.topk_percent`` by default.
    baseline : str, number or tensor, optional
        What removed voxels become, for deletion, insertion and the score drop alike;
        ``settings.baseline`` by default (a blurred scan, Gaussian SD ``settings.blur_sigma_mm``
        mm, converted to voxels of the model grid). The figures' notes declare it.
    settings : FigureSettings
        The figure settings (:data:`~.settings.DEFAULT_SETTINGS`).
    """
    from ..explain.engine import Cancelled, explain
    from ..models.predict import preprocessor_for

    if isinstance(baseline, str) or baseline is None:
        settings = settings.with_(topk_percent=percent, baseline=baseline)
        baseline = settings.baseline
        declared = settings.baseline_text()
    else:  # a number or an array: honoured, declared as such
        settings = settings.with_(topk_percent=percent)
        from .settings import baseline_text

        declared = baseline_text(baseline)
    percent = float(settings.topk_percent)
    bands = linked_bands(bands, settings)
    spec = model.spec
    figs: dict[str, Figure] = {}
    curves: dict[str, dict[str, list]] = {}
    kind = (
        "prototype network (interpretable by design)"
        if spec.prototype
        else "black box (post-hoc explanation)"
    )
    figs["model_kind"] = Figure("model_kind", kind, "pass" if spec.prototype else "warn")
    if spec.task != "classification" or explanation.target.get("kind") != "class":
        why = "classification models only"
        for key in (
            "deletion_auc",
            "insertion_auc",
            "randomisation_final_rho",
            "infidelity",
            "prediction_drop",
            "confidence",
            "tta_sd",
        ):
            figs[key] = Figure(key, None, "n/a", why, figure_label(key, settings))
        return Assessment(figs, settings={**settings.to_dict(), "baseline_text": declared})
    mi = explanation.prediction.model_input
    if mi is None:
        mi = preprocessor_for(model).forward(explanation.native)
    pre = preprocessor_for(model)
    x = mi.tensor()
    grid_map = np.asarray(pre.to_model_axes(explanation.model_map), dtype=np.float64)
    index = int(explanation.target["index"])
    forward = score_function(model, index)
    # sigma in voxels of the model grid, in the model's axis order
    spacing = np.asarray(mi.grid.spacing, dtype=np.float64)
    sigma = float(settings.blur_sigma_mm) / (spacing[::-1] if pre.input.axes == "xyz" else spacing)
    base = M.baseline_like(x, baseline, blur_sigma=sigma)
    note = f"baseline: {declared}"
    phases = 5 + randomisation_stages
    done = 0

    def step() -> None:
        nonlocal done
        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled")
        done += 1
        if progress is not None:
            progress(done, phases)

    f, s = M.deletion_curve(forward, x, grid_map, steps=steps, baseline=base, batch_size=batch_size)
    figs["deletion_auc"] = _figure("deletion_auc", M.curve_auc(f, s), bands, note, settings)
    curves["deletion"] = {"x": f.tolist(), "y": s.tolist()}
    step()
    f, s = M.insertion_curve(forward, x, grid_map, steps=steps, baseline=base, batch_size=batch_size)
    figs["insertion_auc"] = _figure("insertion_auc", M.curve_auc(f, s), bands, note, settings)
    curves["insertion"] = {"x": f.tolist(), "y": s.tolist()}
    step()
    figs["infidelity"] = Figure(
        "infidelity",
        M.infidelity(
            forward,
            x,
            grid_map,
            perturbation="noise" if explanation.method in _LOCAL_METHODS else "subset",
            n_perturb=infidelity_samples,
            batch_size=batch_size,
        ),
    )
    step()
    region = M.topk_mask(grid_map, percent)
    before, after = M.region_removal(forward, x, region, baseline=base)
    figs["prediction_drop"] = _figure("prediction_drop", before - after, bands, note, settings)
    figs["confidence"] = Figure("confidence", before)
    curves["region_removal"] = {"x": ["with region", "without"], "y": [before, after]}
    step()
    scores = M.tta_scores(forward, x, n=tta, batch_size=batch_size)
    figs["tta_sd"] = _figure("tta_sd", float(np.std(scores[1:])) if tta > 0 else None, bands)
    curves["tta"] = {"x": list(range(len(scores))), "y": scores.tolist()}
    step()
    if randomisation_stages > 0:
        from dataclasses import replace as dc_replace

        volume = explanation.native

        def attribute(module: Any) -> np.ndarray:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            randomised = dc_replace(model, module=module, sha256=model.sha256 + ":randomised")
            out = explain(
                volume,
                randomised,
                explanation.method,
                target=index,
                params=dict(explanation.params),
                model_input=mi,
                cancel=cancel,
            )
            step()
            return out.model_map

        result = M.randomisation_test(
            model.module, attribute, max_stages=randomisation_stages, original=explanation.model_map
        )
        figs["randomisation_final_rho"] = _figure("randomisation_final_rho", result.final, bands)
        curves["randomisation"] = {
            "x": [f"{len(s)} layer{'s' if len(s) > 1 else ''} to {s[-1]}" for s in result.stages],
            "y": result.correlations,
        }
    return Assessment(
        figs,
        curves,
        settings={
            **settings.to_dict(),
            # what the cards declare: the setting's name, or the number/array passed instead
            "baseline": settings.baseline if isinstance(baseline, str) else declared,
            "baseline_text": declared,
            "steps": steps,
            "randomisation_stages": randomisation_stages,
            "infidelity_samples": infidelity_samples,
            "tta": tta,
        },
    )
