"""Metrics: pure numpy, 3D, physical units. (Visual recognizability, physical attribution,
transparency and actionability metrics arrive with the Framework issue.)"""

from __future__ import annotations

from .classification import accuracy, auroc, dice
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
from .regions import topk_mask, topk_threshold

__all__ = [
    "accuracy",
    "auroc",
    "dice",
    "peak_index",
    "peak_to_roi_mm",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "roi_auroc",
    "topk_dice",
    "topk_iou",
    "topk_mask",
    "topk_threshold",
]
