"""The goal box: task, who reads the explanation, why; the elements that goal needs; methods.

Step 1 to 3 of the guide (:mod:`napari_mlmi_interp.framework.guide`). Choosing a task,
reader or purpose ticks the elements that goal needs; the reader may tick others. The box
emits the chosen elements; the panel shows the matching cards and the recommended methods,
each with its estimated minutes on this scan on this machine (from one measured pass of the
model); methods over the time limit (a setting here) stay listed as too slow.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ...framework import ELEMENT_INFO, ELEMENTS, PURPOSES, READERS, TASKS, Goal
from ...framework.guide import DEFAULT_TIME_LIMIT_MIN

#: What the estimates are, for the reader (the methods line's and the limit's tooltip).
ESTIMATE_NOTE = (
    "Estimated minutes on this scan on this machine: the method's forward and backward "
    "passes times one measured forward and backward pass of the model on its grid. An "
    "estimate from one pass: batching often makes a run faster; preprocessing and layers are "
    "not counted. Methods estimated over the time limit are not recommended."
)

__all__ = ["GoalBox"]


class GoalBox(QGroupBox):
    """Task, reader and purpose combos, one checkbox per element, the recommended methods.

    Signals
    -------
    elements_changed(list)
        The elements now ticked (in the framework's order).
    time_limit_changed(float)
        The time limit (minutes) above which a method is not recommended.
    timing_requested()
        The reader asked to time one pass of the model on this scan.
    """

    elements_changed = Signal(list)
    time_limit_changed = Signal(float)
    timing_requested = Signal()

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
        self.time_limit = QDoubleSpinBox()
        self.time_limit.setRange(0.5, 24 * 60)
        self.time_limit.setDecimals(1)
        self.time_limit.setSuffix(" min")
        self.time_limit.setValue(DEFAULT_TIME_LIMIT_MIN)
        self.time_limit.setToolTip(ESTIMATE_NOTE)
        self.time_limit.valueChanged.connect(self.time_limit_changed.emit)
        self.time_button = QPushButton("Time on this scan")
        self.time_button.setToolTip("Measure one forward and backward pass of the model on its grid")
        self.time_button.clicked.connect(self.timing_requested.emit)
        limit_row = QHBoxLayout()
        limit_row.addWidget(self.time_limit, 1)
        limit_row.addWidget(self.time_button)
        form.addRow("time limit", limit_row)

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
        """:class:`~napari_mlmi_interp.framework.guide.Recommendation` rows, recommended first.

        The recommended ones on one line with their minutes (or passes, until a pass was
        timed), then one line per method too slow here, with the reason.
        """
        fits = [r for r in recommended if r.recommended]
        slow = [r for r in recommended if not r.recommended]
        lines = [
            "; ".join(r.text for r in fits)
            or ("none within the time limit" if slow else "choose at least one element")
        ]
        if fits and all(r.estimate.seconds is None for r in fits):
            lines[0] += " — time not measured yet"
        lines += [f"not recommended: {r.text}" for r in slow]
        self.recommended.setText("\n".join(lines))
        self.recommended.setToolTip(
            "\n".join(
                f"{r.method.title}: {r.estimate.passes_text}, {r.estimate.text}; "
                f"serves {', '.join(ELEMENT_INFO[s].title for s in r.served)}"
                for r in recommended
            )
            + ("\n\n" + ESTIMATE_NOTE if recommended else "")
        )

    def _ticked(self, *_: Any) -> None:
        self.elements_changed.emit(self.chosen())
