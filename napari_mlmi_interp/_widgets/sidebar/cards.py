"""One card per element: the automatic evidence, the reader's rating and note.

Also the model-transparency card's curves (deletion / insertion, randomisation). Views only:
a card shows figures and emits :attr:`ElementCard.rated`; the panel forwards that to the
assessment session, which commits it.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ...framework import DEFAULT_BANDS, ELEMENT_INFO, FIGURES
from ..plots import CurvePlot

__all__ = ["BAND_COLOURS", "RATING_CHOICES", "ElementCard", "ModelCurves", "bands_text"]

BAND_COLOURS = {"pass": "#2e7d32", "warn": "#ef8f00", "fail": "#c62828", "n/a": "#6b6b6b", "info": "#455a64"}
#: (shown text, rating): "unset" is no rating yet, None is "not applicable".
RATING_CHOICES = [("—", "unset"), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5), ("N/A", None)]


def bands_text(key: str) -> str:
    """The default band of figure ``key`` in words ("pass <= 5, warn <= 15"); "" without one."""
    band = DEFAULT_BANDS.get(key)
    return band.describe() if band else ""


class ElementCard(QGroupBox):
    """One element: evidence rows, rating, note (and element-specific extras in :attr:`extra`).

    Signals
    -------
    rated(str, object, str)
        ``(element, rating, note)``: the reader chose a rating (1-5, None = N/A) or edited the note.
    """

    rated = Signal(str, object, str)

    def __init__(self, element: str, parent: QWidget | None = None) -> None:
        info = ELEMENT_INFO[element]
        super().__init__(info.title, parent)
        self.element = element
        self.setToolTip(f"{info.question}\n{info.definition}")
        layout = QVBoxLayout(self)
        question = QLabel(f"<i>{info.question}</i>")
        question.setWordWrap(True)
        layout.addWidget(question)
        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        layout.addLayout(self.grid)
        self.extra = QVBoxLayout()
        layout.addLayout(self.extra)
        layout.addLayout(self._rating_row())
        self.value_labels: dict[str, QLabel] = {}
        self.band_labels: dict[str, QLabel] = {}

    def _rating_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.rating = QComboBox()
        for text, value in RATING_CHOICES:
            self.rating.addItem(text, value)
        self.rating.setToolTip("Your rating of this element: 1 (poor) to 5 (excellent), or N/A")
        self.note = QLineEdit()
        self.note.setPlaceholderText("note")
        row.addWidget(QLabel("rating"))
        row.addWidget(self.rating)
        row.addWidget(self.note, 1)
        self.rating.currentIndexChanged.connect(self._rated)
        self.note.editingFinished.connect(self._rated)
        return row

    def set_figures(self, figures: list, hidden: bool = False, caption: str = "") -> None:
        """Show ``figures`` (:class:`~napari_mlmi_interp.framework.Figure`), or say they are hidden.

        ``caption``: one line under them, shown as well as in their hover text (what the
        figures measure when that differs from the usual, e.g. against the explained ROI).
        """
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.value_labels, self.band_labels = {}, {}
        if hidden:
            self.grid.addWidget(QLabel("automatic evidence hidden in this study"), 0, 0, 1, 3)
            return
        for r, f in enumerate(figures):
            band_rule = f.rule or bands_text(f.key)
            tip = (
                FIGURES[f.key].definition
                + (f"\nBand: {band_rule}" if band_rule else "")
                + (f"\n{f.note}" if f.note else "")
            )
            name = QLabel(f.label)  # with its setting: "top-1 % Dice", "pointing game (5 mm)"
            value = QLabel(f.text())
            value.setWordWrap(True)
            chip = QLabel(f.band)
            chip.setAlignment(Qt.AlignmentFlag.AlignCenter)
            chip.setStyleSheet(
                f"background:{BAND_COLOURS.get(f.band, '#455a64')}; color:white; "
                "border-radius:3px; padding:0 4px;"
            )
            for w in (name, value, chip):
                w.setToolTip(tip)
            self.grid.addWidget(name, r, 0)
            self.grid.addWidget(value, r, 1)
            self.grid.addWidget(chip, r, 2)
            self.value_labels[f.key] = value
            self.band_labels[f.key] = chip
        if caption and figures:
            line = QLabel(f"<small><i>{caption}</i></small>")
            line.setWordWrap(True)
            self.grid.addWidget(line, len(figures), 0, 1, 3)

    def show_rating(self, rating: Any, note: str) -> None:
        """Show a saved rating ("unset" for none) and note without emitting :attr:`rated`."""
        self.rating.blockSignals(True)
        self.note.blockSignals(True)
        index = 0
        if rating != "unset":
            index = next((i for i, (_t, v) in enumerate(RATING_CHOICES) if v == rating and i > 0), 0)
        self.rating.setCurrentIndex(index)
        self.note.setText(note or "")
        self.rating.blockSignals(False)
        self.note.blockSignals(False)

    def _rated(self, *_: Any) -> None:
        value = self.rating.currentData()
        if value == "unset":
            return
        self.rated.emit(self.element, value, self.note.text())


class ModelCurves(QWidget):
    """The deletion / insertion and randomisation curves under model transparency."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.faithfulness_plot = CurvePlot("deletion / insertion", x_label="fraction of voxels (top first)")
        self.randomisation_plot = CurvePlot(
            "randomisation (top layers first)", x_label="layers randomised", y_range=(-1.0, 1.0)
        )
        layout.addWidget(self.faithfulness_plot)
        layout.addWidget(self.randomisation_plot)

    def clear(self) -> None:
        self.faithfulness_plot.set_series([])
        self.randomisation_plot.set_series([])

    def show_curves(self, curves: dict, settings: dict) -> None:
        """Draw the curves an Assessment carries (those it lacks are left as they are)."""
        if "deletion" in curves:
            baseline = settings.get("baseline_text", "")
            kind = settings.get("baseline")
            effort = settings.get("effort")
            coarse = f" · {effort}, {settings.get('steps')} steps" if effort and effort != "full" else ""
            self.faithfulness_plot.title = (
                "deletion / insertion" + (f" · {kind} baseline" if kind else "") + coarse
            )
            self.faithfulness_plot.setToolTip(
                (
                    f"Computed at the {effort} effort (fewer curve steps, randomisation stages, "
                    "perturbations and copies than the full one) to fit the time limit. "
                    if coarse
                    else ""
                )
                + f"Removed voxels become the baseline: {baseline or 'see the settings'}. "
                "A curve that is not monotonic means the model's score rose again on a mix of "
                "scan and baseline it never saw in training; read the areas, not single points."
            )
            self.faithfulness_plot.set_series(
                [
                    ("deletion", curves["deletion"]["x"], curves["deletion"]["y"], "#c62828"),
                    ("insertion", curves["insertion"]["x"], curves["insertion"]["y"], "#2e7d32"),
                ]
            )
        if "randomisation" in curves:
            self.randomisation_plot.set_series(
                [("rank correlation", None, [1.0, *curves["randomisation"]["y"]], "#1565c0")]
            )
