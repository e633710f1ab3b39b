"""The goal box: task, who reads the explanation, why; the elements that goal needs; methods.

Step 1 and 2 of the guide (:mod:`napari_mlmi_interp.framework.guide`). Choosing a task,
reader or purpose ticks the elements that goal needs; the reader may tick others. The box
emits the chosen elements; the panel shows the matching cards and the recommended methods.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGridLayout, QGroupBox, QLabel, QWidget

from ...framework import ELEMENT_INFO, ELEMENTS, PURPOSES, READERS, TASKS, Goal

__all__ = ["GoalBox"]


class GoalBox(QGroupBox):
    """Task, reader and purpose combos, one checkbox per element, the recommended methods.

    Signals
    -------
    elements_changed(list)
        The elements now ticked (in the framework's order).
    """

    elements_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Goal", parent)
        form = QFormLayout(self)
        self.task, self.reader_role, self.purpose = QComboBox(), QComboBox(), QComboBox()
        for combo, values in ((self.task, TASKS), (self.reader_role, READERS), (self.purpose, PURPOSES)):
            combo.addItems(values)
            combo.currentIndexChanged.connect(self.apply_defaults)
        form.addRow("task", self.task)
        form.addRow("who reads it", self.reader_role)
        form.addRow("purpose", self.purpose)
        boxes = QGridLayout()
        self.element_boxes: dict[str, QCheckBox] = {}
        for i, e in enumerate(ELEMENTS):
            box = QCheckBox(ELEMENT_INFO[e].title)
            box.setToolTip(ELEMENT_INFO[e].question)
            box.toggled.connect(self._ticked)
            self.element_boxes[e] = box
            boxes.addWidget(box, i // 2, i % 2)
        form.addRow("elements", boxes)
        self.recommended = QLabel()
        self.recommended.setWordWrap(True)
        form.addRow("methods", self.recommended)

    def chosen(self) -> list[str]:
        """The ticked elements."""
        return [e for e, b in self.element_boxes.items() if b.isChecked()]

    def goal(self) -> Goal:
        return Goal(
            self.task.currentText(),
            self.reader_role.currentText(),
            self.purpose.currentText(),
            tuple(self.chosen()),
        )

    def set_goal(self, goal: Goal) -> None:
        """Show ``goal`` (its task, reader, purpose and elements)."""
        for combo, value in (
            (self.task, goal.task),
            (self.reader_role, goal.reader),
            (self.purpose, goal.purpose),
        ):
            combo.blockSignals(True)
            combo.setCurrentText(value)
            combo.blockSignals(False)
        self.tick(goal.elements)

    def apply_defaults(self, *_: Any) -> None:
        """Tick the elements the chosen task, reader and purpose need."""
        g = Goal(self.task.currentText(), self.reader_role.currentText(), self.purpose.currentText())
        self.tick(g.elements)

    def tick(self, elements: tuple[str, ...]) -> None:
        for e, box in self.element_boxes.items():
            box.blockSignals(True)
            box.setChecked(e in elements)
            box.blockSignals(False)
        self._ticked()

    def show_recommended(self, recommended: list) -> None:
        """``(method, elements served, n passes)`` rows, best first."""
        self.recommended.setText(
            "; ".join(f"{m.title} ({n} pass{'es' if n != 1 else ''})" for m, _served, n in recommended)
            or "choose at least one element"
        )
        self.recommended.setToolTip(
            "\n".join(
                f"{m.title}: {', '.join(ELEMENT_INFO[s].title for s in served)}"
                for m, served, _ in recommended
            )
        )

    def _ticked(self, *_: Any) -> None:
        self.elements_changed.emit(self.chosen())
