"""Metrics: pure numpy (and torch for the model-based ones), 3D, physical units.

One module per element of the framework: :mod:`.localization`, :mod:`.recognizability`,
:mod:`.physical`, :mod:`.faithfulness` (model transparency and actionability), :mod:`.augmentation`
(test-time augmentation: a classifier's score spread, a segmenter's volume and Dice spread).
"""

from __future__ import annotations

from .augmentation import augmented_copies, tta_segmentation
from .classification import accuracy, auroc, dice
from .faithfulness import (
    RandomisationResult,
    baseline_like,
    curve_auc,
    deletion_curve,
    infidelity,
    insertion_curve,
    map_agreement,
    randomisation_test,
    region_removal,
    tta_scores,
)
from .localization import (
    peak_index,
    peak_to_roi_mm,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roi_auroc,
    topk_dice,
    topk_iou,
)
from .physical import (
    centroid_lps,
    intensity_stats,
    mass_per_label,
    peak_lps,
    region_extent_mm,
    region_volume_ml,
)
from .recognizability import components, gini, mass_region, normalized_entropy
from .regions import topk_mask, topk_threshold

__all__ = [
    "RandomisationResult",
    "accuracy",
    "augmented_copies",
    "auroc",
    "baseline_like",
    "centroid_lps",
    "components",
    "curve_auc",
    "deletion_curve",
    "dice",
    "gini",
    "infidelity",
    "insertion_curve",
    "intensity_stats",
    "map_agreement",
    "mass_per_label",
    "mass_region",
    "normalized_entropy",
    "peak_index",
    "peak_lps",
    "peak_to_roi_mm",
    "pointing_game",
    "randomisation_test",
    "region_extent_mm",
    "region_removal",
    "region_volume_ml",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "roi_auroc",
    "topk_dice",
    "topk_iou",
    "topk_mask",
    "topk_threshold",
    "tta_scores",
    "tta_segmentation",
]
