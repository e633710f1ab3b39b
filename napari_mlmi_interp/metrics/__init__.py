"""Metrics: pure numpy, 3D, physical units. (Localization, faithfulness, complexity and
physical metrics arrive with the Framework issue.)"""

from __future__ import annotations

from .classification import accuracy, auroc, dice

__all__ = ["accuracy", "auroc", "dice"]
