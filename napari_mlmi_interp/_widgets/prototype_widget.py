"""The prototype panel: "this looks like that" for prototype networks, nearest cases otherwise.

For the chosen scan and a prototype model it lists the top-N prototypes for the decision:
three orthogonal slices through each prototype's source patch, its similarity, class
weight and contribution (similarity x weight). Clicking a prototype adds its similarity
map as a heatmap layer (in the scan's geometry) and moves the viewer to its peak.
For other classification models it lists, in the same layout, the nearest cases of a
reference library (a folder of scans, indexed once per model; see
:class:`~napari_mlmi_interp.explain.ReferenceLibrary`); clicking one opens that case.
The computation runs in a napari worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..explain import PrototypeReport, ReferenceLibrary, prototype_report
from ..models import available_models, resolve_model
from ..overlays import add_layer, heatmap_layer_data, volume_of_layer
from .explain_widget import _image_layers

THUMB = 48  # pixels per slice


def patch_thumbnail(patches: np.ndarray | None, size: int = THUMB) -> QPixmap:
    """Three slices side by side (axial, coronal, sagittal), grey, radiological display.

    Coronal and sagittal patches are (z, ...) with z growing upwards, so they are flipped
    vertically to put the head up; intensities are scaled over all three jointly.
    """
    if patches is None:
        return QPixmap(3 * size, size)
    ax, co, sa = (np.asarray(p, dtype=np.float32) for p in patches)
    views = [ax, co[::-1], sa[::-1]]
    lo, hi = np.percentile(np.concatenate([v.ravel() for v in views]), [1, 99])
    scaled = []
    for v in views:
        v = np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1)
        ry, rx = max(1, size // v.shape[0]), max(1, size // v.shape[1])
        scaled.append(np.kron(v, np.ones((ry, rx)))[:size, :size])
    strip = np.ascontiguousarray((np.concatenate(scaled, axis=1) * 255).astype(np.uint8))
    h, w = strip.shape
    image = QImage(strip.data, w, h, w, QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(image)


class PrototypeWidget(QWidget):
    """Top prototypes of a prototype network's decision on a scan layer."""

    reported = Signal(object)

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.report: PrototypeReport | None = None
        self._models: dict[str, Any] = {}
        self._worker = None
        self.scan = QComboBox()
        self.model = QComboBox()
        specs = [s for s in available_models() if s.task == "classification"]
        for spec in sorted(specs, key=lambda s: not s.prototype):  # prototype models first
            self.model.addItem(spec.name, bool(spec.prototype))
        self.library = QLineEdit()
        self.library.setPlaceholderText("reference library: a folder of scans (models without prototypes)")
        self.browse = QPushButton("…")
        self.browse.setMaximumWidth(32)
        self.references: list = []
        self.top = QSpinBox()
        self.top.setRange(1, 50)
        self.top.setValue(5)
        self.run_button = QPushButton("Find prototypes")
        self.list = QListWidget()
        self.list.setIconSize(QSize(3 * THUMB, THUMB))
        self.status = QLabel("Pick a scan and a prototype model.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("scan", self.scan)
        form.addRow("model", self.model)
        library_row = QHBoxLayout()
        library_row.addWidget(self.library)
        library_row.addWidget(self.browse)
        form.addRow("library", library_row)
        form.addRow("top", self.top)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)
        self.run_button.clicked.connect(self.run)
        self.browse.clicked.connect(self._pick_library)
        self.list.itemClicked.connect(self._on_click)
        for name in ("inserted", "removed", "reordered"):
            if hasattr(self.viewer.layers.events, name):
                getattr(self.viewer.layers.events, name).connect(self.refresh_layers)
        self.refresh_layers()

    def refresh_layers(self, *_: Any) -> None:
        current = self.scan.currentText()
        self.scan.clear()
        for layer in _image_layers(self.viewer):
            self.scan.addItem(layer.name)
        index = self.scan.findText(current)
        self.scan.setCurrentIndex(index if index >= 0 else 0)

    def _model(self):
        name = self.model.currentText()
        if name not in self._models:
            self._models[name] = resolve_model(name)
        return self._models[name]

    def run(self) -> None:
        """Compute the report in a worker thread."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return
        name = self.scan.currentText()
        if not name or name not in self.viewer.layers or not self.model.currentText():
            self._error("choose a scan layer and a prototype model first")
            return
        try:
            model = self._model()
        except Exception as exc:
            self._error(str(exc))
            return
        try:
            volume = volume_of_layer(self.viewer.layers[name])
        except ValueError as exc:  # a 2D or sheared layer
            self._error(str(exc))
            return
        top = self.top.value()
        self.run_button.setEnabled(False)
        if self.model.currentData():
            self.status.setText("Comparing the scan with the prototypes…")
            worker = create_worker(lambda: prototype_report(volume, model, top=top), _ignore_errors=True)
            worker.returned.connect(lambda report: self.set_report(report, name))
        else:
            folder = self.library.text().strip()
            if not folder:
                self.run_button.setEnabled(True)
                self._error(f"'{model.spec.name}' has no prototypes: choose a reference library folder")
                return
            self.status.setText("Indexing the reference library (once per model) and searching…")
            worker = create_worker(
                lambda: ReferenceLibrary(folder, model).build().nearest(volume, top=top), _ignore_errors=True
            )
            worker.returned.connect(self.set_references)
        worker.errored.connect(lambda exc: self._error(str(exc)))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

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
            item.setIcon(_icon(m.thumbnails))
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

    def open_reference(self, row: int):
        """Open reference case ``row`` as an image layer (in its own geometry)."""
        from ..io import load
        from ..overlays import volume_layer_data

        m = self.references[row]
        volume = load(m.path)[0]
        return add_layer(
            self.viewer, volume_layer_data(volume, name=f"reference · {m.case_id or Path(m.path).name}")
        )

    def _finished(self) -> None:
        self._worker = None
        self.run_button.setEnabled(True)

    def set_report(self, report: PrototypeReport, scan_name: str = "") -> None:
        """Fill the list from a report (also used by the demo)."""
        self.report = report
        self.references = []
        self._scan_name = scan_name
        self.list.clear()
        pred = report.prediction
        for m in report.matches:
            text = (
                f"#{m.index} ({m.class_name})\n"
                f"similarity {m.similarity:.3f} × weight {m.weight:+.2f} = {m.contribution:+.3f}\n"
                f"from {m.source_case or 'training data'}"
            )
            item = QListWidgetItem(text)
            item.setIcon(_icon(m.patches))
            item.setToolTip("click: show this prototype's similarity map and go to its peak")
            item.setData(Qt.UserRole, m.index)
            self.list.addItem(item)
        said = (
            f"{pred.label} (p = {pred.probabilities[pred.predicted]:.3f})"
            if pred.probabilities is not None
            else ""
        )
        self.status.setText(
            f"{pred.model}: {said}. Top {len(report.matches)} prototypes for '{report.target_name}' "
            "(axial, coronal, sagittal slices of each source patch)."
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
        data, attrs, kind = heatmap_layer_data(
            m.similarity_map, signed=False, name=name, metadata={"peak_lps": m.peak_lps.tolist()}
        )
        attrs["metadata"]["kind"] = "similarity"
        layer = add_layer(self.viewer, (data, attrs, kind))
        self.viewer.dims.point = tuple(float(v) for v in m.peak_lps)
        return layer

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)


def _icon(patches):
    from qtpy.QtGui import QIcon

    return QIcon(patch_thumbnail(patches))
