"""One Qt input per method parameter, chosen by the type of its default (the Explain panel's form)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

__all__ = ["choice_note", "param_widget"]

#: Parameters given as text that have a fixed set of values.
CHOICES = {
    "method": ["gausslegendre", "riemann_trapezoid", "riemann_left"],
    "strategy": ["auto", "incremental", "full", "coarse_to_fine"],
}


def choice_note(key: str, value: str) -> str:
    """What a fixed choice means (occlusion's strategies: exact or how far from exact), or ""."""
    if key == "strategy":
        from ..explain.methods.occlusion import strategy_note

        return strategy_note(value)
    return ""


def param_widget(key: str, default: Any) -> QWidget:
    """A check box (bool), a combo box (text), a spin box (int) or a decimal spin box (number)."""
    if isinstance(default, bool):
        w = QCheckBox()
        w.setChecked(default)
        return w
    if isinstance(default, str):
        w = QComboBox()
        for i, choice in enumerate(CHOICES.get(key, [default])):
            w.addItem(choice)
            if note := choice_note(key, choice):
                w.setItemData(i, note, Qt.ItemDataRole.ToolTipRole)
        w.setCurrentText(default)
        return w
    if isinstance(default, int):
        w = QSpinBox()
        w.setRange(1, 100_000)
        w.setValue(default)
        return w
    w = QDoubleSpinBox()
    w.setDecimals(3)
    w.setRange(-1e6, 1e6)
    w.setSingleStep(0.05)
    w.setValue(float(default))
    return w
