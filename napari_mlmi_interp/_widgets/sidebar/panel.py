"""The framework sidebar: the goal, the explanation to judge, one card per element, the study.

A view over two sessions from :mod:`napari_mlmi_interp.framework`: the
:class:`~napari_mlmi_interp.framework.session.AssessmentSession` (the explanation, region,
evidence and the study file) and, in a reader study, the
:class:`~napari_mlmi_interp.framework.reader_study.ReaderStudySession`. The panel turns layers
into what the sessions take (roles from :mod:`napari_mlmi_interp.overlays.roles`, models from
:func:`~napari_mlmi_interp.models.held.held_models`), runs their long work through two
:class:`~napari_mlmi_interp._widgets.jobs.JobRunner` (the map's figures; the model's figures
and the reader study's next case, with progress and Cancel), and renders what they emit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ...framework import ELEMENT_INFO, ELEMENTS, Assessment, Goal
from ...framework.evidence.effort import effort_text
from ...framework.guide import AUTO_TIMING_VOXELS
from ...framework.reader_study import ReaderStudySession
from ...framework.session import AssessmentSession, Current
from ...framework.settings import DEFAULT_TOPK_PERCENT
from ...models.held import held_models
from ...overlays import add_layer, volume_layer_data, volume_of_layer
from ...overlays.roles import (
    Role,
    blinded_label_of,
    explanation_of,
    group_of,
    layers_of,
    model_key_of,
    percent_of,
    scan_for,
    set_role,
)
from ...store import ACTIONS, StudyStore
from ..jobs import JobRunner, describe_error, wait_while_busy
from .cards import ElementCard, ModelCurves, bands_text
from .goal import GoalBox
from .region import RegionPicker
from .shortcuts import bind_shortcuts, shortcuts_help
from .study import StudyControls, default_study_path
from .study_actions import ReaderStudyMixin
from .study_progress import StudyProgressDialog

__all__ = ["FrameworkSidebar"]

#: Under the localization card when the true region is the ROI the map explains.
EXPLAINED_ROI_CAPTION = (
    "True region = the ROI this map explains: how much evidence lies in the structure, not in its context."
)


class FrameworkSidebar(ReaderStudyMixin, QWidget):
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
        reader = reader or os.environ.get("USER") or "reader"
        self.session = AssessmentSession(reader, opener=StudyStore)
        self.study_session: ReaderStudySession | None = None
        self._pending_map = None
        outer = QVBoxLayout(self)
        self.goal_box = GoalBox()
        g = self.goal_box
        self.task, self.reader_role, self.purpose = g.task, g.reader_role, g.purpose
        self.element_boxes, self.recommended = g.element_boxes, g.recommended
        outer.addWidget(g)
        outer.addLayout(self._build_pick(reader))
        outer.addWidget(self._build_cards(), 1)
        self.status = QLabel("Run an explanation, then pick it above.")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)
        self.setToolTip(shortcuts_help())
        bind_shortcuts(self)
        self.map_jobs = JobRunner(self, status=self.status)
        self.model_jobs = JobRunner(
            self, progress=self.progress, cancel_button=self.cancel_button, status=self.status
        )
        self.model_jobs.busy_changed.connect(lambda busy: self.model_button.setEnabled(not busy))
        self._connect_session()
        self.goal_box.elements_changed.connect(self._elements_changed)
        self.goal_box.timing_requested.connect(self.measure_timing)
        self.goal_box.time_limit_changed.connect(self._time_limit_changed)

        self.open_store(study_path or default_study_path())
        self.goal_box.apply_defaults()
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.refresh_layers()

    # -- building ------------------------------------------------------------------------------
    def _build_pick(self, reader: str) -> QFormLayout:
        """What is judged, by whom, where the ratings go."""
        pick = QFormLayout()
        self.explanation = QComboBox()
        self.explanation.currentIndexChanged.connect(self._explanation_changed)
        pick.addRow("explanation", self.explanation)
        self.reader = QLineEdit(reader)
        self.reader.editingFinished.connect(self._reader_changed)
        pick.addRow("reader", self.reader)
        self.study_controls = StudyControls()
        sc = self.study_controls
        self.study_label, self.study_status = sc.study_label, sc.study_status
        self.reader_study_button, self.next_button = sc.reader_study_button, sc.next_button
        sc.store_chosen.connect(self.open_store)
        sc.study_chosen.connect(self.open_study)
        sc.next_requested.connect(self.next_case)
        sc.progress_requested.connect(self.show_study_progress)
        self.study_dialog: StudyProgressDialog | None = None
        pick.addRow(sc)
        return pick

    def _build_cards(self) -> QScrollArea:
        """One card per element, with the extras of localization, transparency, actionability."""
        self.cards = {e: ElementCard(e) for e in ELEMENTS}
        for card in self.cards.values():
            card.rated.connect(self.rate)
        self.region_picker = RegionPicker(self.viewer)
        self.region, self.annotate_button = self.region_picker.combo, self.region_picker.annotate_button
        self.region_picker.changed.connect(self.update_evidence)
        self.region_picker.annotate_requested.connect(self.annotate)
        self.cards["localization"].extra.addWidget(self.region_picker)
        self._build_model_run(self.cards["model_transparency"])
        action_row = QHBoxLayout()
        self.action = QComboBox()
        self.action.addItem("—", None)
        for a in ACTIONS:
            self.action.addItem(a.replace("_", " "), a)
        self.action.currentIndexChanged.connect(self._action_changed)
        action_row.addWidget(QLabel("your action"))
        action_row.addWidget(self.action, 1)
        self.cards["actionability"].extra.addLayout(action_row)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        for card in self.cards.values():
            body_layout.addWidget(card)
        body_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        return scroll

    def _build_model_run(self, card: ElementCard) -> None:
        run_row = QHBoxLayout()
        self.model_button = QPushButton("Compute model evidence")
        self.model_button.setToolTip(
            "Deletion/insertion curves, parameter randomisation, infidelity, "
            "region removal and test-time augmentation: runs the model"
        )
        self.model_button.clicked.connect(self.compute_model_evidence)
        self.cancel_button = QPushButton("Cancel")
        run_row.addWidget(self.model_button, 1)
        run_row.addWidget(self.cancel_button)
        card.extra.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        card.extra.addWidget(self.progress)
        self.curves = ModelCurves()
        self.faithfulness_plot = self.curves.faithfulness_plot
        self.randomisation_plot = self.curves.randomisation_plot
        card.extra.addWidget(self.curves)

    def _connect_session(self) -> None:
        s = self.session
        s.store_changed.connect(self.study_controls.show_store)
        s.explanation_changed.connect(self._show_explanation)
        s.ratings_loaded.connect(self._show_ratings)
        s.action_loaded.connect(self._show_action)
        s.evidence_changed.connect(self._show_evidence)
        s.saved.connect(self._saved)
        s.error.connect(self._error)

    # -- the sessions' state, as the panel's attributes ----------------------------------------
    @property
    def store(self) -> StudyStore | None:
        return self.session.store

    @property
    def assessment(self) -> Assessment | None:
        return self.session.assessment

    @property
    def run_id(self) -> int | None:
        return self.session.run_id

    @property
    def _current(self) -> dict[str, Any] | None:
        c = self.session.current
        if c is None:
            return None
        return {
            "layer": c.source,
            "explanation": c.explanation,
            "model": c.model,
            "scan": c.scan,
            "blinded": c.blinded,
        }

    @property
    def busy(self) -> bool:
        return self.map_jobs.busy or self.model_jobs.busy or self._pending_map is not None

    # -- study file and reader -----------------------------------------------------------------
    def open_store(self, path: str | os.PathLike[str]) -> None:
        """Use ``path`` as the study file (created when missing)."""
        self.session.open_store(path)

    def _reader_changed(self) -> None:
        self.session.set_reader(self.reader.text())

    # -- goal ----------------------------------------------------------------------------------
    @property
    def goal(self) -> Goal:
        return self.goal_box.goal()

    def set_goal(self, goal: Goal) -> None:
        self.goal_box.set_goal(goal)

    def _elements_changed(self, chosen: list[str]) -> None:
        for e, card in self.cards.items():
            card.setVisible(e in chosen)
        self.session.set_goal(self.goal)
        self.goal_box.show_recommended(self.session.recommended(chosen))

    def _time_limit_changed(self, minutes: float) -> None:
        self.session.time_limit_min = float(minutes)
        self.goal_box.show_recommended(self.session.recommended(self.goal_box.chosen()))

    def measure_timing(self, *, max_voxels: int | None = None) -> None:
        """Time one pass of the current model on its grid (off the GUI thread), then re-rank."""
        job = self.session.timing_request(max_voxels=max_voxels)
        if job is not None:
            self.model_jobs.start(
                job,
                on_done=lambda _timing: self._time_limit_changed(self.session.time_limit_min),
                on_error=self._job_error,
                busy_text="Timing one pass of the model on its grid…",
            )

    def bands_text(self, key: str) -> str:
        return bands_text(key)

    # -- layers --------------------------------------------------------------------------------
    def _heatmaps(self) -> list:
        return [ly for ly in layers_of(self.viewer, Role.HEATMAP) if explanation_of(ly) is not None]

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
        for i, ly in enumerate(heatmaps):
            self.explanation.addItem(ly.name)
            self.explanation.setItemData(i, group_of(ly) or ly.name, Qt.ItemDataRole.ToolTipRole)
        if current in [ly.name for ly in heatmaps]:
            self.explanation.setCurrentText(current)
        self.explanation.blockSignals(False)
        self.region_picker.refresh()
        shown = self.session.current
        if shown is None or shown.source not in heatmaps:
            if heatmaps:
                self._explanation_changed()
            elif shown is not None:
                self.session.clear()

    def select(self, heatmap_layer) -> None:
        """Judge the explanation behind ``heatmap_layer``."""
        self.refresh_layers()
        self.explanation.setCurrentText(heatmap_layer.name)
        self._explanation_changed()

    def select_region(self, labels_layer) -> None:
        """Use ``labels_layer`` as the true region."""
        self.refresh_layers()
        self.region_picker.choose(labels_layer)

    def _explanation_changed(self, *_: Any) -> None:
        name = self.explanation.currentText()
        layer = next((ly for ly in self._heatmaps() if ly.name == name), None)
        if layer is None:
            self.session.clear()
            return
        self.session.select(
            explanation_of(layer),
            model=held_models().get(model_key_of(layer)),
            scan=scan_for(self.viewer, layer),
            blinded=blinded_label_of(layer),
            source=layer,
        )
        self._restore_annotation()
        self.update_evidence()

    def _show_explanation(self, current: Current | None) -> None:
        if current is None:
            return
        self.curves.clear()
        self._elements_changed(self.goal_box.chosen())
        self.measure_timing(max_voxels=AUTO_TIMING_VOXELS)

    def _show_ratings(self, ratings: dict) -> None:
        for e, card in self.cards.items():
            r = ratings.get(e)
            card.show_rating(r["rating"] if r else "unset", r["note"] if r else "")

    def _show_action(self, action: str | None) -> None:
        self.action.blockSignals(True)
        self.action.setCurrentIndex(self.action.findData(action) if action else 0)
        self.action.blockSignals(False)

    # -- region --------------------------------------------------------------------------------
    def annotate(self) -> None:
        """Add an empty Labels layer on the scan's grid in paint mode, as the true region."""
        if self.session.current is None:
            self._error("pick an explanation first")
            return
        native = self.session.current.explanation.native
        blank = native.with_array(np.zeros(native.shape, dtype=np.uint8), name="true region")
        layer = self._add_annotation(blank)
        layer.selected_label = 1
        layer.brush_size = 8
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self.select_region(layer)
        self.status.setText("Paint the true region (the figures follow); then rate localization.")

    def _add_annotation(self, volume) -> Any:
        layer = add_layer(self.viewer, volume_layer_data(volume, layer_type="labels", opacity=0.5))
        set_role(layer, Role.ANNOTATION)
        return layer

    def _restore_annotation(self) -> None:
        """Show this reader's saved region for the case when no region is chosen yet."""
        if self.region_picker.layer is not None:
            return
        saved = self.session.saved_region()
        if saved is not None:
            self.select_region(self._add_annotation(saved))
        elif self.study_session is None:  # outside a (blinded) study: a mask loaded beside the scan
            self.refresh_layers()
            self.region_picker.pick_mask_on(self.session.current.explanation.native.geometry)

    def _push_region(self) -> None:
        """Hand the chosen region (as painted now) to the session."""
        layer = self.region_picker.layer
        if layer is None:
            self.session.set_region(None)
            return
        try:
            volume = volume_of_layer(layer)
        except ValueError as exc:
            self._error(str(exc))
            self.session.set_region(None)
            return
        self.session.set_region(volume, layer.name, drawn=self.region_picker.drawn)

    # -- evidence ------------------------------------------------------------------------------
    def _percent(self) -> float:
        """The top-k % of the current explanation's contour layer (the shared default without one)."""
        current = self.session.current
        if current is not None and current.source is not None:
            for ly in layers_of(self.viewer, Role.CONTOUR, group=group_of(current.source)):
                return percent_of(ly, DEFAULT_TOPK_PERCENT)
        return DEFAULT_TOPK_PERCENT

    def update_evidence(self) -> None:
        """Recompute the map's figures (localization, recognizability, physical) off the GUI thread."""
        if self.session.current is None:
            return
        self._push_region()
        self.goal_box.show_recommended(self.session.recommended(self.goal_box.chosen()))
        self.session.percent = self._percent()
        self._run_map(self.session.map_request())

    def _run_map(self, request) -> None:
        if request is None:
            return
        if self.map_jobs.busy:
            self._pending_map = request  # the latest request runs next; older ones would be stale
            return
        self.map_jobs.start(
            lambda _token, _report: request.compute(),
            on_done=lambda assessment: self.session.deliver(request, assessment),
            on_error=self._job_error,
            on_finished=self._map_finished,
            busy_text="Computing the evidence…",
        )

    def _map_finished(self) -> None:
        request, self._pending_map = self._pending_map, None
        if request is not None and request.generation == self.session.generation:
            self._run_map(request)

    def assess_now(self, *, with_model: bool = True) -> Assessment | None:
        """Compute and show the evidence on the calling thread (headless demo, scripts).

        The panel's buttons do the same off the GUI thread; this waits for the result.
        """
        if self.session.current is None:
            return None
        self._push_region()
        self.session.percent = self._percent()
        return self.session.assess_now(with_model=with_model)

    def show_assessment(self, assessment: Assessment) -> None:
        """Fill the cards (and store the figures with the run)."""
        self.session.show(assessment)

    def _show_evidence(self, assessment: Assessment) -> None:
        hidden = self.study_session is not None and not self.study_session.show_evidence
        against_roi = assessment.settings.get("localization_region") == "the explained ROI"
        for e, figs in assessment.by_element().items():
            caption = EXPLAINED_ROI_CAPTION if e == "localization" and against_roi else ""
            self.cards[e].set_figures(figs, hidden=hidden, caption=caption)
        if not hidden:
            self.curves.show_curves(assessment.curves, assessment.settings)
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
        if self.session.current is None or self.model_jobs.busy:
            return
        self.session.percent = self._percent()
        request = self.session.model_request()
        if request is None:
            return
        self.model_jobs.start(
            lambda token, report: request.compute(report, token),
            on_done=lambda assessment: self.session.deliver(request, assessment),
            on_error=self._job_error,
            busy_text="Running the model for the transparency and actionability evidence: "
            f"{effort_text(request.effort)}…",
        )

    def cancel(self) -> None:
        """Stop the model's work (model evidence, preparing a study case) at its next batch."""
        self.model_jobs.cancel()

    # -- ratings -------------------------------------------------------------------------------
    def rate(self, element: str, rating: int | None, note: str = "") -> None:
        """Record a rating now (1-5, None = N/A) for the current explanation."""
        self.session.rate(element, rating, note)

    def _action_changed(self, *_: Any) -> None:
        self.session.set_action(self.action.currentData())

    def _saved(self, message: str) -> None:
        self.status.setText(message)

    # -- misc ----------------------------------------------------------------------------------
    def _job_error(self, exc: BaseException) -> None:
        self._error(describe_error(exc))

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel running work, wait for it, close the study file."""
        self._pending_map = None
        self.cancel()
        if self.study_dialog is not None:  # an analysis the reader-study dialog is running
            self.study_dialog.jobs.shutdown(timeout_s)
        wait_while_busy(self, timeout_s)
        self.session.close()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
