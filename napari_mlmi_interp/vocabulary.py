"""The framework's words, at the bottom of the house: elements, reader actions, figure names.

Every layer may import this module (it imports nothing of the package): the method registry
declares which elements a method serves, the study store checks the elements and actions it
saves, the framework builds its evidence on them (its figure catalogue is keyed by
:data:`FIGURE_NAMES`), without any of those importing another for a tuple of names.
"""

from __future__ import annotations

__all__ = ["ACTIONS", "ELEMENTS", "FIGURES_BY_ELEMENT", "FIGURE_ELEMENT", "FIGURE_NAMES"]

#: The five elements of interpretability for medical imaging (Wang et al., IEEE Access 2024),
#: in the order the sidebar, exports and reports list them.
ELEMENTS = (
    "localization",
    "visual_recognizability",
    "physical_attribution",
    "model_transparency",
    "actionability",
)

#: What a reader can do with an explanation (the actionability element's recorded outcome).
ACTIONS = ("accept", "override", "refer", "flag_shortcut")

#: The figures of automatic evidence, per element, in the order the sidebar, exports and
#: reports list them (their labels, units and definitions are the framework's catalogue,
#: :data:`napari_mlmi_interp.framework.evidence.FIGURES`).
FIGURES_BY_ELEMENT: dict[str, tuple[str, ...]] = {
    "localization": (
        "pointing_game",
        "peak_to_roi_mm",
        "relevance_mass_accuracy",
        "relevance_rank_accuracy",
        "auroc",
        "topk_dice",
        "topk_iou",
    ),
    "visual_recognizability": ("components_90", "gini", "entropy"),
    "physical_attribution": (
        "peak_lps_mm",
        "centroid_lps_mm",
        "region_volume_ml",
        "region_extent_mm",
        "intensity",
        "label_mass",
    ),
    "model_transparency": (
        "model_kind",
        "deletion_auc",
        "insertion_auc",
        "randomisation_final_rho",
        "infidelity",
    ),
    "actionability": ("prediction_drop", "confidence", "tta_sd", "tta_volume_sd_ml", "tta_dice_sd"),
}

#: Every figure's name, element by element (the keys of the framework's figure catalogue).
FIGURE_NAMES: tuple[str, ...] = tuple(name for names in FIGURES_BY_ELEMENT.values() for name in names)

#: The element each figure is evidence for.
FIGURE_ELEMENT: dict[str, str] = {
    name: element for element, names in FIGURES_BY_ELEMENT.items() for name in names
}
