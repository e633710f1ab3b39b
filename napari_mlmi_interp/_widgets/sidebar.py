"""The framework sidebar: rate an explanation on the five elements of interpretability.

Top: the goal (task, reader, purpose) and the elements it needs, with recommended methods.
Then the explanation to judge (any heatmap layer made by the Explain panel or the reader
study) and the study file. Then one card per element: the automatic evidence (value, a
pass/warn/fail chip, the definition on hover), a 1-5 rating or N/A and a note; under
localization the true region (pick a Labels layer or *Annotate* to draw one: the figures
recompute as you paint, and the region is saved); under model transparency the deletion,
insertion and randomisation curves (*Compute model evidence*, off the GUI thread, with
progress and cancel); under actionability the reader's action.

Every rating, note, action and annotation is committed to the study file the moment it is
made (:class:`~napari_mlmi_interp.store.StudyStore`). In a reader study the items come
blinded ("Explanation <n>"), in the reader's own random order, resuming where they stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..explain import Cancelled, CancelToken, explain
from ..framework import (
    ELEMENT_INFO,
    ELEMENTS,
    FIGURES,
    PURPOSES,
    READERS,
    TASKS,
    Assessment,
    Goal,
    map_evidence,
    model_evidence,
    recommended_methods,
)
from ..framework.files import on_grid_of
from ..framework.settings import DEFAULT_TOPK_PERCENT
from ..framework.study import ReaderStudy
from ..io import load
from ..models import ModelError, resolve_model
from ..overlays import (
    add_explanation_layers,
    add_layer,
    explanation_layer_data,
    volume_layer_data,
    volume_of_layer,
)
from ..store import ACTIONS, StoreError, StudyStore
from .common import ProgressBridge, wait_while_busy
from .plots import CurvePlot

__all__ = ["FrameworkSidebar", "default_study_path"]

STUDY_ENV = "MLMI_INTERP_STUDY"
BAND_COLOURS = {"pass": "#2e7d32", "warn": "#ef8f00", "fail": "#c62828", "n/a": "#6b6b6b", "info": "#455a64"}
RATING_CHOICES = [("—", "unset"), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5), ("N/A", None)]
NONE = "(none)"


def default_study_path() -> Path:
    """``$MLMI_INTERP_STUDY`` or ``~/.mlmi-interp/study.sqlite``."""
    env = os.environ.get(STUDY_ENV)
    return Path(env) if env else Path.home() / ".mlmi-interp" / "study.sqlite"


class ElementCard(QGroupBox):
    """One element: evidence rows, rating, note (and element-specific extras below)."""

    def __init__(self, element: str, sidebar: FrameworkSidebar) -> None:
        info = ELEMENT_INFO[element]
        super().__init__(info.title)
        self.element = element
        self.sidebar = sidebar
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
        layout.addLayout(row)
        self.rating.currentIndexChanged.connect(self._rated)
        self.note.editingFinished.connect(self._rated)
        self.value_labels: dict[str, QLabel] = {}
        self.band_labels: dict[str, QLabel] = {}

    def set_figures(self, figures: list, hidden: bool = False) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.value_labels, self.band_labels = {}, {}
        if hidden:
            self.grid.addWidget(QLabel("automatic evidence hidden in this study"), 0, 0, 1, 3)
            return
        for r, f in enumerate(figures):
            info = FIGURES[f.key]
            band_rule = f.rule or self.sidebar.bands_text(f.key)
            tip = (
                info.definition
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

    def show_rating(self, rating: Any, note: str) -> None:
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
        self.sidebar.rate(self.element, value, self.note.text())


class FrameworkSidebar(QWidget):
    """Dock widget: goal, elements, evidence, ratings, annotation, reader study.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    study_path : path-like, optional
        The study file (default :func:`default_study_path`).
    reader : str, optional
        The reader's name (default ``$USER``).

    Signals
    -------
    assessed(object)
        An :class:`~napari_mlmi_interp.framework.Assessment` was shown.
    """

    assessed = Signal(object)

    def __init__(
        self,
        napari_viewer,
        study_path: str | os.PathLike[str] | None = None,
        reader: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: StudyStore | None = None
        self.assessment: Assessment | None = None
        self.run_id: int | None = None
        self.study: ReaderStudy | None = None
        self.study_item = None
        self._current: dict[str, Any] | None = None
        self._generation = 0
        self._workers: set = set()
        self._model_worker = None
        self._token: CancelToken | None = None
        self._bridge = ProgressBridge()
        self._bridge.progress.connect(self._on_progress)
        self._region_layer = None
        self._saved_region: int | None = None
        self._recompute = QTimer(self)
        self._recompute.setSingleShot(True)
        self._recompute.setInterval(400)
        self._recompute.timeout.connect(self.update_evidence)

        outer = QVBoxLayout(self)
        # -- goal and elements --------------------------------------------------------------------
        goal_box = QGroupBox("Goal")
        form = QFormLayout(goal_box)
        self.task, self.reader_role, self.purpose = QComboBox(), QComboBox(), QComboBox()
        for combo, values in ((self.task, TASKS), (self.reader_role, READERS), (self.purpose, PURPOSES)):
            combo.addItems(values)
            combo.currentIndexChanged.connect(self._goal_changed)
        form.addRow("task", self.task)
        form.addRow("who reads it", self.reader_role)
        form.addRow("purpose", self.purpose)
        boxes = QGridLayout()
        self.element_boxes: dict[str, QCheckBox] = {}
        for i, e in enumerate(ELEMENTS):
            box = QCheckBox(ELEMENT_INFO[e].title)
            box.setToolTip(ELEMENT_INFO[e].question)
            box.toggled.connect(self._elements_changed)
            self.element_boxes[e] = box
            boxes.addWidget(box, i // 2, i % 2)
        form.addRow("elements", boxes)
        self.recommended = QLabel()
        self.recommended.setWordWrap(True)
        form.addRow("methods", self.recommended)
        outer.addWidget(goal_box)

        # -- what is judged, where ratings go ----------------------------------------------------------
        pick = QFormLayout()
        self.explanation = QComboBox()
        self.explanation.currentIndexChanged.connect(self._explanation_changed)
        pick.addRow("explanation", self.explanation)
        self.reader = QLineEdit(reader or os.environ.get("USER") or "reader")
        self.reader.editingFinished.connect(self._reader_changed)
        pick.addRow("reader", self.reader)
        study_row = QHBoxLayout()
        self.study_label = QLabel()
        self.study_label.setWordWrap(True)
        open_study = QPushButton("Study file…")
        open_study.clicked.connect(self._choose_store)
        study_row.addWidget(self.study_label, 1)
        study_row.addWidget(open_study)
        pick.addRow("ratings in", study_row)
        reader_row = QHBoxLayout()
        self.reader_study_button = QPushButton("Reader study…")
        self.reader_study_button.clicked.connect(self._choose_reader_study)
        self.next_button = QPushButton("Next case")
        self.next_button.setEnabled(False)
        self.next_button.clicked.connect(self.next_case)
        reader_row.addWidget(self.reader_study_button)
        reader_row.addWidget(self.next_button)
        pick.addRow("", reader_row)
        self.study_status = QLabel("")
        pick.addRow("", self.study_status)
        outer.addLayout(pick)

        # -- cards ------------------------------------------------------------------------------------
        self.cards = {e: ElementCard(e, self) for e in ELEMENTS}
        loc = self.cards["localization"]
        region_row = QHBoxLayout()
        self.region = QComboBox()
        self.region.currentIndexChanged.connect(self._region_changed)
        self.annotate_button = QPushButton("Annotate")
        self.annotate_button.setToolTip(
            "Draw the true region as a Labels layer; the figures follow your brush"
        )
        self.annotate_button.clicked.connect(self.annotate)
        region_row.addWidget(QLabel("true region"))
        region_row.addWidget(self.region, 1)
        region_row.addWidget(self.annotate_button)
        loc.extra.addLayout(region_row)
        tr = self.cards["model_transparency"]
        run_row = QHBoxLayout()
        self.model_button = QPushButton("Compute model evidence")
        self.model_button.setToolTip(
            "Deletion/insertion curves, parameter randomisation, infidelity, "
            "region removal and test-time augmentation: runs the model"
        )
        self.model_button.clicked.connect(self.compute_model_evidence)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        run_row.addWidget(self.model_button, 1)
        run_row.addWidget(self.cancel_button)
        tr.extra.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        tr.extra.addWidget(self.progress)
        self.faithfulness_plot = CurvePlot("deletion / insertion", x_label="fraction of voxels (top first)")
        self.randomisation_plot = CurvePlot(
            "randomisation (top layers first)", x_label="layers randomised", y_range=(-1.0, 1.0)
        )
        tr.extra.addWidget(self.faithfulness_plot)
        tr.extra.addWidget(self.randomisation_plot)
        act = self.cards["actionability"]
        action_row = QHBoxLayout()
        self.action = QComboBox()
        self.action.addItem("—", None)
        for a in ACTIONS:
            self.action.addItem(a.replace("_", " "), a)
        self.action.currentIndexChanged.connect(self._action_changed)
        action_row.addWidget(QLabel("your action"))
        action_row.addWidget(self.action, 1)
        act.extra.addLayout(action_row)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        for card in self.cards.values():
            body_layout.addWidget(card)
        body_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.status = QLabel("Run an explanation, then pick it above.")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        self.open_store(study_path or default_study_path())
        self._goal_changed()
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.refresh_layers()

    # -- study file --------------------------------------------------------------------------------
    def open_store(self, path: str | os.PathLike[str]) -> None:
        """Use ``path`` as the study file (created when missing)."""
        try:
            store = StudyStore(path, reader=self.reader.text().strip() or "reader")
        except (StoreError, OSError) as exc:
            self._error(str(exc))
            return
        if self.store is not None:
            self.store.close()
        self.store = store
        self.study_label.setText(str(store.path))
        self.study_label.setToolTip(str(store.path))
        if self._current is not None:
            self._bind_run()

    def _choose_store(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Study file",
            str(self.store.path if self.store else default_study_path()),
            "Study (*.sqlite *.db)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.open_store(path)

    def _reader_changed(self) -> None:
        if self.store is not None:
            self.store.reader = self.reader.text().strip() or "reader"
        if self._current is not None:
            self._load_ratings()

    # -- goal ------------------------------------------------------------------------------------
    @property
    def goal(self) -> Goal:
        chosen = tuple(e for e, b in self.element_boxes.items() if b.isChecked())
        return Goal(
            self.task.currentText(), self.reader_role.currentText(), self.purpose.currentText(), chosen
        )

    def set_goal(self, goal: Goal) -> None:
        for combo, value in (
            (self.task, goal.task),
            (self.reader_role, goal.reader),
            (self.purpose, goal.purpose),
        ):
            combo.blockSignals(True)
            combo.setCurrentText(value)
            combo.blockSignals(False)
        self._check_elements(goal.elements)

    def _goal_changed(self, *_: Any) -> None:
        g = Goal(self.task.currentText(), self.reader_role.currentText(), self.purpose.currentText())
        self._check_elements(g.elements)

    def _check_elements(self, elements: tuple[str, ...]) -> None:
        for e, box in self.element_boxes.items():
            box.blockSignals(True)
            box.setChecked(e in elements)
            box.blockSignals(False)
        self._elements_changed()

    def _elements_changed(self, *_: Any) -> None:
        chosen = [e for e, b in self.element_boxes.items() if b.isChecked()]
        for e, card in self.cards.items():
            card.setVisible(e in chosen)
        model = (self._current or {}).get("model")
        has_layer = bool(model and model.spec.cam_layers) if model is not None else True
        recs = recommended_methods(chosen, has_layer=has_layer)[:4] if chosen else []
        self.recommended.setText(
            "; ".join(f"{m.title} ({n} pass{'es' if n != 1 else ''})" for m, _served, n in recs)
            or "choose at least one element"
        )
        self.recommended.setToolTip(
            "\n".join(
                f"{m.title}: {', '.join(ELEMENT_INFO[s].title for s in served)}" for m, served, _ in recs
            )
        )

    def bands_text(self, key: str) -> str:
        from ..framework import DEFAULT_BANDS

        band = DEFAULT_BANDS.get(key)
        return band.describe() if band else ""

    # -- layers ------------------------------------------------------------------------------------
    def _heatmaps(self) -> list:
        return [
            ly
            for ly in self.viewer.layers
            if ly.metadata.get("kind") == "heatmap" and ly.metadata.get("explanation") is not None
        ]

    def _layers_changed(self, event=None) -> None:
        QTimer.singleShot(0, self.refresh_layers)

    def refresh_layers(self) -> None:
        """Re-list heatmap layers (explanations) and Labels layers (true regions)."""
        try:
            heatmaps = self._heatmaps()
        except RuntimeError:  # the viewer is closing
            return
        current = self.explanation.currentText()
        self.explanation.blockSignals(True)
        self.explanation.clear()
        for ly in heatmaps:
            self.explanation.addItem(ly.name)
        if current in [ly.name for ly in heatmaps]:
            self.explanation.setCurrentText(current)
        self.explanation.blockSignals(False)
        region = self.region.currentText()
        self.region.blockSignals(True)
        self.region.clear()
        self.region.addItem(NONE)
        for ly in self.viewer.layers:
            if isinstance(ly, Labels) and ly.metadata.get("kind") != "contour":
                self.region.addItem(ly.name)
        if region and self.region.findText(region) >= 0:
            self.region.setCurrentText(region)
        self.region.blockSignals(False)
        if self._current is None or self._current["layer"] not in heatmaps:
            if heatmaps:
                self._explanation_changed()
            else:
                self._current = None

    def select(self, heatmap_layer) -> None:
        """Judge the explanation behind ``heatmap_layer``."""
        self.refresh_layers()
        self.explanation.setCurrentText(heatmap_layer.name)
        self._explanation_changed()

    def select_region(self, labels_layer) -> None:
        """Use ``labels_layer`` as the true region."""
        self.refresh_layers()
        self.region.setCurrentText(labels_layer.name)

    def _explanation_changed(self, *_: Any) -> None:
        name = self.explanation.currentText()
        layers = [ly for ly in self._heatmaps() if ly.name == name]
        if not layers:
            self._current = None
            return
        layer = layers[0]
        meta = layer.metadata
        self._current = {
            "layer": layer,
            "explanation": meta["explanation"],
            "model": meta.get("model"),
            "scan": meta.get("scan"),
            "blinded": meta.get("blinded_label"),
        }
        self.assessment = None
        self.faithfulness_plot.set_series([])
        self.randomisation_plot.set_series([])
        self._elements_changed()
        self._bind_run()
        self._restore_annotation()
        self.update_evidence()

    def _bind_run(self) -> None:
        if self.store is None or self._current is None:
            return
        try:
            self.run_id = self.store.add_explanation(
                self._current["explanation"], blinded_label=self._current["blinded"]
            )
        except StoreError as exc:
            self.run_id = None
            self._error(str(exc))
            return
        self._load_ratings()

    def _load_ratings(self) -> None:
        if self.store is None or self.run_id is None:
            return
        reader = self.reader.text().strip() or "reader"
        ratings = self.store.ratings(self.run_id, reader=reader)
        for e, card in self.cards.items():
            r = ratings.get(e)
            card.show_rating(r["rating"] if r else "unset", r["note"] if r else "")
        action = self.store.action(self.run_id, reader=reader)
        self.action.blockSignals(True)
        self.action.setCurrentIndex(self.action.findData(action["action"]) if action else 0)
        self.action.blockSignals(False)

    # -- region ----------------------------------------------------------------------------------
    def _region_layer_named(self, name: str):
        return self.viewer.layers[name] if name and name != NONE and name in self.viewer.layers else None

    def _region_changed(self, *_: Any) -> None:
        old = self._region_layer
        if old is not None:
            try:
                old.events.paint.disconnect(self._painted)
                old.events.data.disconnect(self._painted)
            except (TypeError, ValueError, RuntimeError):
                pass
        layer = self._region_layer_named(self.region.currentText())
        self._region_layer = layer
        if layer is not None:
            layer.events.paint.connect(self._painted)
            layer.events.data.connect(self._painted)
        self.update_evidence()

    def _painted(self, event=None) -> None:
        self._recompute.start()

    def annotate(self) -> None:
        """Add an empty Labels layer on the scan's grid in paint mode, as the true region."""
        if self._current is None:
            self._error("pick an explanation first")
            return
        native = self._current["explanation"].native
        blank = native.with_array(np.zeros(native.shape, dtype=np.uint8), name="true region")
        layer = add_layer(self.viewer, volume_layer_data(blank, layer_type="labels", opacity=0.5))
        layer.metadata["kind"] = "annotation"
        layer.selected_label = 1
        layer.brush_size = 8
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self.select_region(layer)
        self.status.setText("Paint the true region (the figures follow); then rate localization.")

    def _region_mask(self) -> np.ndarray | None:
        layer = self._region_layer
        if layer is None or self._current is None:
            return None
        native = self._current["explanation"].native
        region = volume_of_layer(layer)
        notes: list[str] = []
        mask = np.asarray(on_grid_of(region, native, labels=True, what="region", notes=notes)) > 0
        return mask

    def _restore_annotation(self) -> None:
        """Show this reader's saved region for the case when no region is chosen yet."""
        if self.store is None or self._current is None or self._region_layer is not None:
            return
        native = self._current["explanation"].native
        saved = self.store.annotation(native.case_id, reader=self.reader.text().strip() or "reader")
        if saved is None or saved[0].shape != native.shape:
            return
        volume = native.with_array(saved[0].astype(np.uint8), name="true region (saved)")
        layer = add_layer(self.viewer, volume_layer_data(volume, layer_type="labels", opacity=0.5))
        layer.metadata["kind"] = "annotation"
        self.select_region(layer)

    # -- evidence --------------------------------------------------------------------------------
    def _percent(self) -> float:
        layer = self._current["layer"] if self._current else None
        if layer is not None:
            group = layer.metadata.get("group")
            for ly in self.viewer.layers:
                if ly.metadata.get("group") == group and ly.metadata.get("kind") == "contour":
                    return float(ly.metadata.get("percent", DEFAULT_TOPK_PERCENT))
        return DEFAULT_TOPK_PERCENT

    def update_evidence(self) -> None:
        """Recompute the map's figures (localization, recognizability, physical) off the GUI thread."""
        from napari.qt.threading import create_worker

        if self._current is None:
            return
        self._generation += 1
        generation = self._generation
        current = self._current
        try:
            mask = self._region_mask()
        except ValueError as exc:
            self._error(str(exc))
            mask = None
        explanation, scan = current["explanation"], current["scan"]
        percent = self._percent()
        drawn = self._region_layer is not None and self._region_layer.metadata.get("kind") == "annotation"
        digest = hash((explanation.native.case_id, mask.tobytes())) if mask is not None else None
        if (
            drawn
            and mask is not None
            and mask.any()
            and self.store is not None
            and digest != self._saved_region
        ):
            self._saved_region = digest  # each new drawing once, not again at every recompute
            self.store.save_annotation(
                explanation.native.case_id,
                mask,
                explanation.native.geometry,
                reader=self.reader.text().strip() or "reader",
            )

        def work():
            return map_evidence(explanation.native, roi=mask, scan=scan, percent=percent)

        worker = create_worker(work, _ignore_errors=True)
        worker.returned.connect(lambda a: self._show_map_evidence(a, generation))
        worker.errored.connect(lambda exc: self._error(str(exc)))
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        self.status.setText("Computing the evidence…")
        worker.start()

    def assess_now(self, *, with_model: bool = True) -> Assessment | None:
        """Compute and show the evidence on the calling thread (headless demo, scripts).

        The panel's buttons do the same off the GUI thread; this waits for the result.
        """
        if self._current is None:
            return None
        self._generation += 1  # results of earlier background requests are stale now
        current = self._current
        assessment = map_evidence(
            current["explanation"].native,
            roi=self._region_mask(),
            scan=current["scan"],
            percent=self._percent(),
        )
        if with_model and current["model"] is not None:
            assessment = assessment.merged(
                model_evidence(current["explanation"], current["model"], percent=self._percent())
            )
        self.show_assessment(assessment)
        return assessment

    @property
    def busy(self) -> bool:
        return bool(self._workers) or self._model_worker is not None

    def _show_map_evidence(self, assessment: Assessment, generation: int) -> None:
        if generation != self._generation or self._current is None:
            return  # a newer request superseded this one
        if self.assessment is not None:
            # keep the model figures of the same explanation
            model_part = {
                k: f
                for k, f in self.assessment.figures.items()
                if f.element in ("model_transparency", "actionability")
            }
            assessment = Assessment(
                {**assessment.figures, **model_part},
                dict(self.assessment.curves),
                {**self.assessment.settings, **assessment.settings},
            )
        self.show_assessment(assessment)

    def show_assessment(self, assessment: Assessment) -> None:
        """Fill the cards (and store the figures with the run)."""
        self.assessment = assessment
        hidden = self.study is not None and not self.study.show_evidence
        for e, figs in assessment.by_element().items():
            self.cards[e].set_figures(figs, hidden=hidden)
        curves = assessment.curves
        if "deletion" in curves and not hidden:
            baseline = assessment.settings.get("baseline_text", "")
            kind = assessment.settings.get("baseline")
            self.faithfulness_plot.title = "deletion / insertion" + (f" · {kind} baseline" if kind else "")
            self.faithfulness_plot.setToolTip(
                f"Removed voxels become the baseline: {baseline or 'see the settings'}. "
                "A curve that is not monotonic means the model's score rose again on a mix of "
                "scan and baseline it never saw in training; read the areas, not single points."
            )
            self.faithfulness_plot.set_series(
                [
                    ("deletion", curves["deletion"]["x"], curves["deletion"]["y"], "#c62828"),
                    ("insertion", curves["insertion"]["x"], curves["insertion"]["y"], "#2e7d32"),
                ]
            )
        if "randomisation" in curves and not hidden:
            self.randomisation_plot.set_series(
                [("rank correlation", None, [1.0, *curves["randomisation"]["y"]], "#1565c0")]
            )
        if self.store is not None and self.run_id is not None:
            self.store.record_evidence(self.run_id, assessment)
        # name the failing figures, not just their elements: a map can hit the lesion (pointing
        # game passes) and still spread its mass (relevance mass fails)
        fails = [
            f"{f.label} ({ELEMENT_INFO[e].title.lower()})"
            for e, figs in assessment.by_element().items()
            for f in figs
            if f.band == "fail"
        ]
        self.status.setText("Evidence ready" + (f"; failing: {', '.join(fails)}." if fails else "."))
        self.assessed.emit(assessment)

    def compute_model_evidence(self) -> None:
        """Deletion/insertion, randomisation, infidelity, region removal, TTA (in a worker)."""
        from napari.qt.threading import create_worker

        if self._current is None or self._model_worker is not None:
            return
        current = self._current
        model = current["model"]
        if model is None:
            self._error("this heatmap does not carry its model; run it from the Explain panel")
            return
        token = CancelToken()
        self._token = token
        bridge = self._bridge
        percent = self._percent()

        report = bridge.reporter(token)

        def work():
            return model_evidence(
                current["explanation"], model, percent=percent, progress=report, cancel=token
            )

        worker = create_worker(work, _ignore_errors=True)
        worker.returned.connect(lambda a: self._show_model_evidence(a, current))
        worker.errored.connect(self._model_error)
        worker.finished.connect(self._model_finished)
        self._model_worker = worker
        self.model_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText("Running the model for the transparency and actionability evidence…")
        worker.start()

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()
            self.status.setText("Cancelling…")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, total))

    def _show_model_evidence(self, assessment: Assessment, current: dict) -> None:
        if current is not self._current:
            return
        base = self.assessment or Assessment()
        self.show_assessment(base.merged(assessment))

    def _model_error(self, exc: Exception) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if isinstance(exc, Cancelled):
            self.status.setText("Cancelled.")
            return
        self._error(f"{type(exc).__name__}: {exc}")

    def _model_finished(self) -> None:
        self._model_worker = None
        self._token = None
        self.model_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    # -- ratings -------------------------------------------------------------------------------
    def rate(self, element: str, rating: int | None, note: str = "") -> None:
        """Record a rating now (1-5, None = N/A) for the current explanation."""
        if self.store is None or self.run_id is None:
            self._error("pick an explanation (and a study file) before rating")
            return
        try:
            self.store.rate(self.run_id, element, rating, note, reader=self.reader.text().strip() or "reader")
        except StoreError as exc:
            self._error(str(exc))
            return
        said = "N/A" if rating is None else str(rating)
        self.status.setText(f"Saved {ELEMENT_INFO[element].title}: {said} ({time.strftime('%H:%M:%S')}).")

    def _action_changed(self, *_: Any) -> None:
        action = self.action.currentData()
        if action is None or self.store is None or self.run_id is None:
            return
        self.store.set_action(self.run_id, action, reader=self.reader.text().strip() or "reader")
        self.status.setText(f"Saved action: {action.replace('_', ' ')} ({time.strftime('%H:%M:%S')}).")

    # -- reader study ------------------------------------------------------------------------------
    def _choose_reader_study(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reader study", "", "Study (*.json)")
        if path:
            self.open_study(path)

    def open_study(self, path: str | os.PathLike[str]) -> None:
        """Start (or resume) a reader study for the current reader."""
        try:
            study = ReaderStudy.load(path)
            study.order(self.reader.text())
        except ValueError as exc:
            self._error(str(exc))
            return
        self.study = study
        self.set_goal(study.goal)
        self.next_button.setEnabled(True)
        self._study_progress()

    def _study_progress(self) -> None:
        if self.study is None or self.store is None:
            return
        reader = self.reader.text().strip()
        done = self.store.done_items(self.study.name, reader=reader)
        self.study_status.setText(f"{self.study.name}: {len(done)} of {len(self.study.items)} done")

    def next_case(self) -> None:
        """Finish the current study item and show the next one (blinded)."""
        from napari.qt.threading import create_worker

        if self.study is None or self.store is None or self._model_worker is not None:
            return
        reader = self.reader.text().strip()
        if self.study_item is not None:
            self.store.mark_done(self.study.name, self.study_item[1].id, run_id=self.run_id, reader=reader)
        nxt = self.study.next(reader, self.store.done_items(self.study.name, reader=reader))
        self._clear_study_layers()
        if nxt is None:
            self.study_item = None
            self._current = None
            self.study_status.setText(f"{self.study.name}: all {len(self.study.items)} done. Thank you.")
            self.next_button.setEnabled(False)
            return
        position, item = nxt
        label = ReaderStudy.label(position)
        try:
            scan = load(item.scan)[0]
            roi = load(item.roi)[0] if item.roi else None
            model = resolve_model(item.model)
        except (ValueError, OSError, ModelError) as exc:
            self._error(str(exc))
            return
        scan.name = "Case"
        token = CancelToken()
        self._token = token
        bridge = self._bridge
        percent = self._percent()  # read here: the worker thread must not touch the layers

        report = bridge.reporter(token)

        def work():
            result = explain(
                scan,
                model,
                item.method,
                target=item.target,
                params=item.params,
                progress=report,
                cancel=token,
            )
            data = explanation_layer_data(
                result,
                scan_name="Case",
                method_title=label,
                percent=percent,
                surface=False,
                model=model,
                scan=scan,
            )
            return result, data

        def done(out) -> None:
            _result, data = out
            scan_layer = add_layer(self.viewer, volume_layer_data(scan, name="Case"))
            scan_layer.metadata["study_item"] = item.id
            if roi is not None:
                rl = add_layer(
                    self.viewer,
                    volume_layer_data(roi, layer_type="labels", name="Case · reference region", opacity=0.35),
                )
                rl.visible = False
                rl.metadata["study_item"] = item.id
            data["heatmap"][1]["metadata"]["blinded_label"] = label
            layers = add_explanation_layers(self.viewer, data)
            for ly in layers.values():
                ly.metadata["study_item"] = item.id
            self.study_item = (position, item)
            self.select(layers["heatmap"])
            if roi is not None:
                self.select_region(rl)
            self.study_status.setText(
                f"{self.study.name}: {label}, {position + 1} of {len(self.study.items)}"
            )

        worker = create_worker(work, _ignore_errors=True)
        worker.returned.connect(done)
        worker.errored.connect(self._model_error)
        worker.finished.connect(self._model_finished)
        self._model_worker = worker
        self.model_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.status.setText(f"Preparing {label}…")
        worker.start()

    def _clear_study_layers(self) -> None:
        for ly in [ly for ly in self.viewer.layers if "study_item" in ly.metadata]:
            self.viewer.layers.remove(ly)

    # -- misc --------------------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel running work, wait for it, close the study file."""
        self.cancel()
        wait_while_busy(self, timeout_s)
        if self.store is not None:
            self.store.close()
            self.store = None

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
