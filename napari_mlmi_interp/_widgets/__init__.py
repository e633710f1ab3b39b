"""Qt dock widgets (thin: they gather choices, run pure compute in a napari worker, and hand
results to the napari adapters in :mod:`napari_mlmi_interp.overlays`)."""

from __future__ import annotations

from .explain_widget import ExplainWidget
from .pacs_widget import PacsWidget
from .prototype_widget import PrototypeWidget
from .sidebar import FrameworkSidebar
from .window_widget import WindowWidget

__all__ = ["ExplainWidget", "FrameworkSidebar", "PacsWidget", "PrototypeWidget", "WindowWidget"]
