"""Choices the panels share: the scan layers of a viewer in a combo box."""

from __future__ import annotations

from typing import Any

from ..overlays.roles import scan_layers

__all__ = ["refill_scans"]


def refill_scans(combo: Any, viewer: Any, *, quiet: bool = True) -> None:
    """List ``viewer``'s scan layers in ``combo``, keeping the current one when it is still there.

    ``quiet``: without emitting the combo's signals while it is refilled.
    """
    current = combo.currentText()
    if quiet:
        combo.blockSignals(True)
    combo.clear()
    for layer in scan_layers(viewer):
        combo.addItem(layer.name)
    index = combo.findText(current)
    combo.setCurrentIndex(index if index >= 0 else 0)
    if quiet:
        combo.blockSignals(False)
