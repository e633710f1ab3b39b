"""The figure catalogue: every figure's element, label, unit and definition; one judged figure.

The names and elements come from :mod:`napari_mlmi_interp.vocabulary` (one source of truth);
this module adds what a reader sees: the label, the unit and the one-sentence definition
shown on hover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...vocabulary import FIGURE_ELEMENT, FIGURE_NAMES, FIGURES_BY_ELEMENT
from ..settings import DEFAULT_SETTINGS, FigureSettings

if TYPE_CHECKING:
    from .bands import Band

__all__ = ["FIGURES", "LOCALIZATION_FIGURES", "Figure", "FigureInfo", "figure_label", "jsonable", "judged"]


@dataclass(frozen=True)
class FigureInfo:
    element: str
    label: str
    unit: str
    definition: str


#: Label, unit and one-sentence definition (shown on hover) of every figure named in the vocabulary.
_TEXTS: dict[str, tuple[str, str, str]] = {
    "pointing_game": (
        "pointing game",
        "",
        "Hit when the map's maximum (its largest value) lies inside the true region or within "
        "the tolerance in mm of it (Zhang et al. 2016); the same distance as peak to region.",
    ),
    "peak_to_roi_mm": (
        "peak to region",
        "mm",
        "Distance in mm from the map's maximum (its largest value) to the nearest voxel of the "
        "true region (0 inside); passes within the pointing-game tolerance.",
    ),
    "relevance_mass_accuracy": (
        "relevance mass",
        "",
        "Share of all positive attribution that falls inside the true region (Arras et al. 2022).",
    ),
    "relevance_rank_accuracy": (
        "relevance rank",
        "",
        "Of the K most attributed voxels (K = size of the true region), the share inside it.",
    ),
    "auroc": (
        "AUROC map vs region",
        "",
        "How well the map's values separate voxels inside the true region from the rest (0.5 = chance).",
    ),
    "topk_dice": (
        "top-k Dice",
        "",
        "Dice overlap of the top-k % most attributed voxels (the contour) with the true region.",
    ),
    "topk_iou": (
        "top-k IoU",
        "",
        "Intersection over union of the top-k % region with the true region.",
    ),
    "components_90": (
        "blobs holding 90 %",
        "",
        "Connected components of the smallest voxel set holding 90 % of the positive attribution.",
    ),
    "gini": (
        "sparseness (Gini)",
        "",
        "Gini index of |attribution|: 0 when spread evenly, near 1 when concentrated in few voxels.",
    ),
    "entropy": (
        "entropy",
        "",
        "Shannon entropy of |attribution| normalised by its maximum: 1 flat, 0 a single voxel.",
    ),
    "peak_lps_mm": (
        "peak (LPS)",
        "mm",
        "Patient position (left, posterior, superior) of the map's maximum.",
    ),
    "centroid_lps_mm": (
        "centroid (LPS)",
        "mm",
        "Attribution-weighted centre of the attributed region, in patient coordinates.",
    ),
    "region_volume_ml": (
        "attributed volume",
        "mL",
        "Volume of the smallest voxel set holding half of the positive attribution.",
    ),
    "region_extent_mm": (
        "extent (L, P, S)",
        "mm",
        "Size of the attributed region's bounding box along left, posterior and superior.",
    ),
    "intensity": (
        "intensity inside",
        "",
        "Scan values inside the attributed region (HU for CT): mean, SD, median, 5th and 95th "
        "percentiles, minimum and maximum.",
    ),
    "label_mass": (
        "attribution per structure",
        "",
        "Share of the positive attribution in each structure of the loaded label map.",
    ),
    "model_kind": (
        "model",
        "",
        "Prototype networks explain by design ('this looks like that'); other models are "
        "black boxes explained after the fact.",
    ),
    "deletion_auc": (
        "deletion AUC",
        "",
        "Area under the target's score as the most attributed voxels are replaced by the "
        "baseline, most attributed first (lower = more faithful; Petsiuk et al. 2018). The "
        "score is the class probability (classifier) or the ROI score, the sum or mean of the "
        "class's logits in the ROI, scaled to 1 on the scan and 0 on the baseline "
        "(segmenter). The curve need "
        "not fall steadily: a partly replaced scan is an image the model never saw, and a "
        "bump means its score rose again on that mix; read the area, not single points.",
    ),
    "insertion_auc": (
        "insertion AUC",
        "",
        "Area under the target's score (as for deletion) as the most attributed voxels are "
        "restored into the baseline, most attributed first (higher = more faithful). Same "
        "baseline as deletion; a curve "
        "that is not monotonic says the model reacts to the mix of scan and baseline.",
    ),
    "randomisation_final_rho": (
        "randomisation rank corr.",
        "",
        "Spearman correlation of the map with the map of the same target (class, or class in "
        "the ROI) on a model whose layers were re-drawn at random top-down; a faithful map "
        "changes (low value; Adebayo et al. 2018).",
    ),
    "infidelity": (
        "infidelity",
        "",
        "Mean squared error between the map's predicted and the model's actual change of the "
        "target's score (as for deletion) under random perturbations, after best scaling "
        "(Yeh et al. 2019; Captum). Lower is "
        "better; compare methods on one model.",
    ),
    "prediction_drop": (
        "score drop without top-k region",
        "",
        "Target's score lost when the top-k % region is replaced by the baseline: the class "
        "probability (classifier) or the share of the ROI score above the baseline "
        "(segmenter). The finding the map shows is what drives the decision.",
    ),
    "confidence": (
        "confidence",
        "",
        "Probability of the explained class on this scan (segmenter: its mean over the ROI's voxels).",
    ),
    "tta_sd": (
        "spread under augmentation",
        "",
        "SD of the confidence (the class probability; segmenter: its mean over the ROI) "
        "under small shifts, intensity changes and noise; a wide spread is a cue to refer.",
    ),
    "tta_volume_sd_ml": (
        "volume spread under augmentation",
        "mL",
        "SD of the explained class's segmented volume (whole model grid) under the same "
        "shifts, intensity changes and noise; segmenters only.",
    ),
    "tta_dice_sd": (
        "Dice spread under augmentation",
        "",
        "SD of the Dice between the explained class's segmentation of each augmented copy "
        "(shifted back) and of the scan; segmenters only.",
    ),
}

#: Every figure: element, label, unit, one-sentence definition (shown on hover), in the
#: vocabulary's order (:data:`~napari_mlmi_interp.vocabulary.FIGURE_NAMES`).
FIGURES: dict[str, FigureInfo] = {
    name: FigureInfo(FIGURE_ELEMENT[name], *_TEXTS[name]) for name in FIGURE_NAMES
}

#: The localization figures, in the order the sidebar and the exports list them.
LOCALIZATION_FIGURES = FIGURES_BY_ELEMENT["localization"]


def figure_label(key: str, settings: FigureSettings = DEFAULT_SETTINGS) -> str:
    """A figure's label with the setting it depends on, e.g. ``"top-1 % Dice"``."""
    label = FIGURES[key].label
    if "top-k" in label:
        label = label.replace("top-k", f"top-{settings.topk_percent:g} %")
    if key == "pointing_game":
        label = f"{label} ({settings.tolerance_mm:g} mm)"
    return label


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
        if isinstance(v, dict):  # the scan's values inside: all of them; per structure: the top 4
            shown = list(v.items()) if self.key == "intensity" else list(v.items())[:4]
            return ", ".join(f"{k} {_num(x)}" for k, x in shown)
        if isinstance(v, list | tuple | np.ndarray):
            return "(" + ", ".join(_num(x) for x in v) + ")" + (f" {unit}" if unit else "")
        return _num(v) + (f" {unit}" if unit else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": jsonable(self.value),
            "band": self.band,
            **({"note": self.note} if self.note else {}),
        }


def _num(x: Any) -> str:
    """A number as people read it: ``1,106`` (a count), ``41.6``, ``0.874``, ``0.00606``
    (three significant figures, no exponent down to 1e-4), ``1,647.3``; an exponent only for
    the very small (``9.1e-05``) or very large."""
    x = float(x)
    a = abs(x)
    if x.is_integer() and a < 1e12:
        return f"{x:,.0f}"
    if a >= 1e12:
        return f"{x:.2e}"
    if a >= 100:
        return f"{x:,.1f}"
    if a >= 1e-4:
        return f"{x:.3g}"
    return f"{x:.2g}"


def jsonable(v: Any) -> Any:
    """``v`` as JSON can hold it: arrays as lists (4 decimals), numbers rounded to 6 decimals."""
    if isinstance(v, np.ndarray):
        return [round(float(x), 4) for x in v]
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    return round(float(v), 6)


def judged(
    key: str,
    value: Any,
    bands: Mapping[str, Band],
    note: str = "",
    settings: FigureSettings = DEFAULT_SETTINGS,
) -> Figure:
    """Figure ``key`` judged by its band in ``bands`` (``"info"`` when it has none)."""
    band = bands[key].judge(None if value is None else float(value)) if key in bands else "info"
    rule = bands[key].describe() if key in bands else ""
    return Figure(key, value, band, note, figure_label(key, settings), rule)
