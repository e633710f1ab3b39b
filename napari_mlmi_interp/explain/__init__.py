"""Attributions on 3D volumes with Captum: methods, targets, progress and cancel.

Pure compute: never imports napari or Qt. (A memory-budgeted batch size arrives in the
next increment of the Explain issue.)
"""

from __future__ import annotations

from .cache import ResultCache
from .engine import Cancelled, CancelToken, Explanation, explain, resolve_params
from .methods import ELEMENTS, METHODS, Method, get_method, list_methods

__all__ = [
    "ELEMENTS",
    "METHODS",
    "CancelToken",
    "Cancelled",
    "Explanation",
    "Method",
    "ResultCache",
    "explain",
    "get_method",
    "list_methods",
    "resolve_params",
]
