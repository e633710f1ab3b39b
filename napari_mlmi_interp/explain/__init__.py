"""Attributions on 3D volumes with Captum: methods, targets, progress and cancel.

Pure compute: never imports napari or Qt. Internal batch sizes are chosen under a memory
budget from a measured forward pass (:mod:`.budget`); results are cached on disk
(:class:`ResultCache`).
"""

from __future__ import annotations

from .budget import MemoryBudgetError
from .cache import ResultCache
from .engine import Cancelled, CancelToken, Explanation, explain, resolve_params
from .methods import ELEMENTS, METHODS, Method, get_method, list_methods
from .prototypes import PrototypeMatch, PrototypeReport, prototype_report
from .references import ReferenceLibrary, ReferenceMatch

__all__ = [
    "ELEMENTS",
    "METHODS",
    "CancelToken",
    "Cancelled",
    "Explanation",
    "MemoryBudgetError",
    "Method",
    "PrototypeMatch",
    "PrototypeReport",
    "ReferenceLibrary",
    "ReferenceMatch",
    "ResultCache",
    "explain",
    "get_method",
    "list_methods",
    "prototype_report",
    "resolve_params",
]
