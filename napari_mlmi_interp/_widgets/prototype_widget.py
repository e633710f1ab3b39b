"""The prototype panel: "this looks like that" for prototype networks, nearest cases otherwise.

For the chosen scan and a prototype model it lists the top-N prototypes for a class (the
predicted class first; the *class* box picks any other): three orthogonal slices through
each prototype's source patch with the prototype's region outlined, its similarity, class
weight and contribution (similarity x weight). Clicking a prototype adds its similarity
map as a heatmap layer (in the scan's geometry) and moves the viewer to its peak.
For other classification models it lists, in the same layout, the nearest cases of a
reference library (a folder of scans, indexed once per model; see
:class:`~napari_mlmi_interp.explain.ReferenceLibrary`); clicking one opens that case.
The computation (the model's loading included) and the reading of a reference case run in
napari worker threads (:class:`~._widgets.jobs.JobRunner`); Cancel drops a running report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtGui import QIcon, QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..explain import Cancelled, PrototypeReport, ReferenceLibrary, prototype_report
from ..explain.prototypes import THUMBNAIL_SIZE, prototype_thumbnail
from ..models import available_models
from ..models.held import held_models
from ..overlays import add_layer, heatmap_layer_data, volume_of_layer
from ..overlays.roles import Role, layer_metadata, set_role
from .choices import refill_scans
from .jobs import JobRunner

THUMB = THUMBNAIL_SIZE  # pixels per slice
GAP = 4  # pixels between the slices


def patch_thumbnail(patches: np.ndarray | None, regions: np.ndarray | None = None, *, outline: bool = True):
    """Three slices side by side (axial, coronal, sagittal) as a QPixmap, region outlined.

    The picture is :func:`~napari_mlmi_interp.explain.prototypes.prototype_thumbnail`'s;
    ``outline=False`` draws none (reference cases have no region).
    """
    if patches is None:
        return QPixmap(3 * THUMB + 2 * GAP, THUMB)
    if not outline:
        regions = np.zeros(np.shape(patches), bool)
    rgb = np.ascontiguousarray(prototype_thumbnail(patches, regions, size=THUMB, gap=GAP))
    h, w, _ = rgb.shape
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    return QPixmap.fromImage(image)


class PrototypeWidget(QWidget):
    """Top prototypes of a prototype network's decision on a scan layer.

    Signals
    -------
    reported(object)
        The :class:`~napari_mlmi_interp.explain.PrototypeReport` once its rows are listed.
    reference_opened(object)
        The image layer of a reference case, once :meth:`open_reference` has read it.
    """

    reported = Signal(object)
    reference_opened = Signal(object)

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.report: PrototypeReport | None = None
        self._report_model = None
        self._scan_name = ""
        self.references: list = []
        specs = [s for s in available_models() if s.task == "classification"]
        self._specs = {spec.name: spec for spec in specs}
        self._build(specs)
        self._lay_out()
        # the report or the search, and reading a reference case: each off the GUI thread
        self.jobs = JobRunner(self, cancel_button=self.cancel_button, status=self.status)
        self.jobs.busy_changed.connect(lambda busy: self.run_button.setEnabled(not busy))
        self.loader = JobRunner(self, status=self.status)
        self.run_button.clicked.connect(lambda: self.run())
        self.browse.clicked.connect(self._pick_library)
        self.list.itemClicked.connect(self._on_click)
        self.model.currentIndexChanged.connect(self._on_model)
        self.target.currentIndexChanged.connect(self._on_target)
        for name in ("inserted", "removed", "reordered"):
            if hasattr(self.viewer.layers.events, name):
                getattr(self.viewer.layers.events, name).connect(self.refresh_layers)
        self.refresh_layers()
        self._fill_classes()

    def _build(self, specs: list) -> None:
        self.scan = QComboBox()
        self.model = QComboBox()
        for spec in sorted(specs, key=lambda s: not s.prototype):  # prototype models first
            self.model.addItem(spec.name, bool(spec.prototype))
        self.library = QLineEdit()
        self.library.setPlaceholderText("reference library: a folder of scans (models without prototypes)")
        self.browse = QPushButton("…")
        self.browse.setMaximumWidth(32)
        self.target = QComboBox()
        self.target.setToolTip("the class whose prototypes are listed (the predicted class after each run)")
        self.top = QSpinBox()
        self.top.setRange(1, 50)
        self.top.setValue(5)
        self.run_button = QPushButton("Find prototypes")
        self.cancel_button = QPushButton("Cancel")
        self.list = QListWidget()
        self.list.setIconSize(QSize(3 * THUMB + 2 * GAP, THUMB))
        # one column, the text under each thumbnail: the rows fit a narrow dock
        self.list.setViewMode(QListView.IconMode)
        self.list.setFlow(QListView.TopToBottom)
        self.list.setWrapping(False)
        self.list.setMovement(QListView.Static)
        self.list.setResizeMode(QListView.Adjust)
        self.list.setWordWrap(True)
        self.list.setSpacing(4)
        self.list.setMinimumWidth(3 * THUMB + 2 * GAP + 32)
        self.status = QLabel("Pick a scan and a prototype model.")
        self.status.setWordWrap(True)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("scan", self.scan)
        form.addRow("model", self.model)
        library_row = QHBoxLayout()
        library_row.addWidget(self.library)
        library_row.addWidget(self.browse)
        form.addRow("library", library_row)
        form.addRow("class", self.target)
        form.addRow("top", self.top)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)

    @property
    def busy(self) -> bool:
        """Whether a report, a search or a reference case is being computed or read."""
        return self.jobs.busy or self.loader.busy

    def cancel(self) -> None:
        """Stop the running report or search (its result is dropped)."""
        self.jobs.cancel()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel running work and wait for its threads (when the panel closes)."""
        self.jobs.shutdown(timeout_s)
        self.loader.shutdown(timeout_s)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def _on_model(self, *_: Any) -> None:
        """Another model: its classes in the class box; the list (another model's) is cleared."""
        if self.report is not None and self.report.prediction.model != self.model.currentText():
            self.report = self._report_model = None
            self.list.clear()
        self._fill_classes()

    def _fill_classes(self) -> None:
        """List the current model's classes in the class box (a report marks the predicted one)."""
        self.target.blockSignals(True)
        self.target.clear()
        spec = self._specs.get(self.model.currentText())
        for c in spec.classes if spec is not None else []:
            self.target.addItem(c, c)
        self.target.blockSignals(False)

    def _show_classes(self, report: PrototypeReport) -> None:
        """The class box after a report: every class, the predicted one marked, the report's selected."""
        self.target.blockSignals(True)
        self.target.clear()
        for i, c in enumerate(report.classes or [report.target_name]):
            said = " (predicted)" if i == report.prediction.predicted else ""
            self.target.addItem(f"{c}{said}", c)
        self.target.setCurrentIndex(max(0, self.target.findData(report.target_name)))
        self.target.blockSignals(False)

    def _on_target(self, *_: Any) -> None:
        """The user picked a class: list that class's prototypes (recomputed in a worker)."""
        wanted = self.target.currentData()
        if self.report is None or wanted is None or wanted == self.report.target_name:
            return
        self.run(target=wanted)

    def refresh_layers(self, *_: Any) -> None:
        refill_scans(self.scan, self.viewer, quiet=False)

    def run(self, target: str | None = None) -> None:
        """Compute the report in a worker thread, for ``target`` (default: the predicted class).

        The model is loaded in that thread too (once: :func:`~napari_mlmi_interp.models.held.held_models`).
        """
        if self.jobs.busy:
            return
        name = self.scan.currentText()
        if target is not None and self.report is not None and self._scan_name:
            name = self._scan_name  # another class of the report on screen: the same scan
        model_name = self.model.currentText()
        if not name or name not in self.viewer.layers or not model_name:
            self._error("choose a scan layer and a prototype model first")
            return
        source = self._report_model if target is not None and self._report_model else model_name
        spec = source.spec if not isinstance(source, str) else self._specs[model_name]
        try:
            volume = volume_of_layer(self.viewer.layers[name])
        except ValueError as exc:  # a 2D or sheared layer
            self._error(str(exc))
            return
        top = self.top.value()
        if spec.prototype:
            said = f"'{target}'" if target else "the predicted class"
            self.jobs.start(
                lambda token, _report: _prototype_job(volume, source, target, top, token),
                on_done=lambda out: self.set_report(out[0], name, model=out[1]),
                on_error=lambda exc: self._error(str(exc)),
                busy_text=f"Comparing the scan with the prototypes of {said}…",
            )
            return
        folder = self.library.text().strip()
        if not folder:
            self._error(f"'{spec.name}' has no prototypes: choose a reference library folder")
            return
        self.jobs.start(
            lambda token, report: _reference_job(folder, source, volume, top, token, report),
            on_done=self.set_references,
            on_error=lambda exc: self._error(str(exc)),
            busy_text="Indexing the reference library (once per model) and searching…",
        )

    def _pick_library(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Reference library (a folder of scans)")
        if folder:
            self.library.setText(folder)

    def set_references(self, matches: list) -> None:
        """Fill the list with nearest reference cases (same layout as prototypes)."""
        self.report = None
        self.references = list(matches)
        self.list.clear()
        for m in self.references:
            said = f"{m.predicted}" + (f" (p = {m.probability:.3f})" if m.probability is not None else "")
            item = QListWidgetItem(
                f"{m.case_id or Path(m.path).name}\nsimilarity {m.similarity:.3f}\nmodel: {said}"
            )
            item.setIcon(QIcon(patch_thumbnail(m.thumbnails, outline=False)))
            item.setToolTip(f"{m.path}\nclick: open this reference case")
            self.list.addItem(item)
        self.status.setText(
            f"{len(self.references)} nearest reference cases in the model's feature space "
            "(cosine similarity; axial, coronal, sagittal through each case's centre)."
        )

    def _on_click(self, item) -> None:
        row = self.list.row(item)
        if self.report is not None:
            self.show_prototype(row)
        elif 0 <= row < len(self.references):
            self.open_reference(row)

    def open_reference(self, row: int) -> None:
        """Open reference case ``row`` as an image layer (in its own geometry).

        The scan is read off the GUI thread; :attr:`reference_opened` carries the new layer.
        """
        from ..overlays import volume_layer_data

        m = self.references[row]
        name = f"reference · {m.case_id or Path(m.path).name}"

        def opened(volume) -> None:
            layer = add_layer(self.viewer, volume_layer_data(volume, name=name))
            self.status.setText(f"Opened {name}.")
            self.reference_opened.emit(layer)

        self.loader.start(
            lambda _token, _report: _read_scan(m.path),
            on_done=opened,
            on_error=lambda exc: self._error(str(exc)),
            busy_text=f"Reading {Path(m.path).name}…",
        )

    def set_report(self, report: PrototypeReport, scan_name: str = "", *, model=None) -> None:
        """Fill the list from a report (also used by the demo); ``model`` serves other classes."""
        self.report = report
        self._report_model = model
        self.references = []
        self._scan_name = scan_name
        self._show_classes(report)
        self.list.clear()
        pred = report.prediction
        for m in report.matches:
            text = (
                f"#{m.index} ({m.class_name})\n"
                f"similarity {m.similarity:.3f} × weight {m.weight:+.2f} = {m.contribution:+.3f}\n"
                f"from {m.source_case or 'training data'}"
            )
            item = QListWidgetItem(text)
            item.setIcon(QIcon(patch_thumbnail(m.patches, m.regions)))
            item.setToolTip(
                "outlined: the prototype's region in its source patch\n"
                "click: show this prototype's similarity map and go to its peak"
            )
            item.setData(Qt.UserRole, m.index)
            self.list.addItem(item)
        said = (
            f"{pred.label} (p = {pred.probabilities[pred.predicted]:.3f})"
            if pred.probabilities is not None
            else ""
        )
        self.status.setText(
            f"{pred.model}: {said}. Top {len(report.matches)} prototypes for '{report.target_name}' "
            "(axial, coronal, sagittal slices of each source patch; outlined: the prototype's region)."
        )
        self.reported.emit(report)

    def show_prototype(self, row: int):
        """Add prototype ``row``'s similarity map as a layer and move to its peak slice."""
        if self.report is None or not 0 <= row < len(self.report.matches):
            return None
        m = self.report.matches[row]
        name = f"{self._scan_name or 'scan'} · prototype {m.index} similarity"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        layer_data = heatmap_layer_data(
            m.similarity_map, signed=False, name=name, metadata=layer_metadata(peak_lps=m.peak_lps.tolist())
        )
        set_role(layer_data, Role.SIMILARITY)
        layer = add_layer(self.viewer, layer_data)
        self.viewer.dims.point = tuple(float(v) for v in m.peak_lps)
        return layer

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)


# -- the jobs (worker threads) ---------------------------------------------------------------------


def _held(source) -> Any:
    """A LoadedModel as it is, or the one a registered name gives (loaded once, held)."""
    return held_models().resolve(source) if isinstance(source, str) else source


def _prototype_job(volume, source, target: str | None, top: int, token) -> tuple:
    """Load (or reuse) the model, then its prototype report; ``(report, model)``."""
    model = _held(source)
    if token.cancelled:
        raise Cancelled()
    return prototype_report(volume, model, target=target, top=top), model


def _reference_job(folder: str, source, volume, top: int, token, report) -> list:
    """Load (or reuse) the model, index the library (once per model), search it."""
    model = _held(source)

    def progress(done: int, total: int) -> None:
        if token.cancelled:
            raise Cancelled()
        report(done, total)

    return ReferenceLibrary(folder, model).build(progress).nearest(volume, top=top)


def _read_scan(path: str) -> Any:
    from ..io import load

    return load(path)[0]
