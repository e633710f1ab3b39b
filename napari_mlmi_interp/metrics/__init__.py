"""Metrics: pure numpy, 3D, physical units. (Localization, faithfulness, complexity and
physical metrics arrive with the Framework issue.)"""

from __future__ import annotations

from .classification import accuracy, auroc, dice
from .regions import topk_mask, topk_threshold

__all__ = ["accuracy", "auroc", "dice", "topk_mask", "topk_threshold"]
