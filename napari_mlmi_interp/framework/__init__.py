"""The five elements of interpretability for medical imaging: goal, elements, methods, evidence.

Pure compute (no napari, no Qt): the sidebar shows what this package assembles.
"""

from __future__ import annotations

from .evidence import (
    DEFAULT_BANDS,
    FIGURES,
    Assessment,
    Band,
    Figure,
    figure_label,
    linked_bands,
    load_bands,
    map_evidence,
    model_evidence,
    score_function,
)
from .guide import ELEMENT_INFO, ELEMENTS, PURPOSES, READERS, TASKS, Goal, elements_for, recommended_methods
from .settings import DEFAULT_SETTINGS, DEFAULT_TOLERANCE_MM, DEFAULT_TOPK_PERCENT, FigureSettings

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_SETTINGS",
    "DEFAULT_TOLERANCE_MM",
    "DEFAULT_TOPK_PERCENT",
    "ELEMENTS",
    "ELEMENT_INFO",
    "FIGURES",
    "PURPOSES",
    "READERS",
    "TASKS",
    "Assessment",
    "Band",
    "Figure",
    "FigureSettings",
    "Goal",
    "elements_for",
    "figure_label",
    "linked_bands",
    "load_bands",
    "map_evidence",
    "model_evidence",
    "recommended_methods",
    "score_function",
]
