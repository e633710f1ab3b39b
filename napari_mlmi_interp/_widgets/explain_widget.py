"""The "Explain" dock widget: scan, model, method, target, parameters; Run / Cancel; overlays.

Thin: choices go to :func:`napari_mlmi_interp.explain.explain` in a napari worker thread
(the GUI never waits on the model); progress comes back through a Qt signal (queued to the
GUI thread); results become layers through :mod:`napari_mlmi_interp.overlays`.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..explain import Cancelled, CancelToken, Explanation, explain, get_method, list_methods
from ..framework.settings import DEFAULT_TOPK_PERCENT
from ..models import ModelError, available_models, resolve_model
from ..overlays import (
    add_explanation_layers,
    compare_layers,
    end_compare,
    explanation_layer_data,
    rescale_heatmaps,
    set_contour_percent,
    volume_of_layer,
)
from .common import ProgressBridge, wait_while_busy

#: Shown first: the methods a reader most often wants, cheapest first.
RECOMMENDED = ("gradcam", "integrated_gradients", "smoothgrad", "occlusion", "gradcam_pp")
#: Parameters not offered in the form (resolved automatically or fixed for reproducibility).
HIDDEN_PARAMS = {"internal_batch_size", "nt_samples_batch_size", "perturbations_per_eval", "seed"}
FROM_FILE = "From file…"
PREDICTED = "predicted class"
MODEL_PREDICTION = "model's own prediction"

_CHOICES = {
    "method": ["gausslegendre", "riemann_trapezoid", "riemann_left"],
    "strategy": ["full", "coarse_to_fine"],
}


def _image_layers(viewer) -> list:
    return [ly for ly in viewer.layers if ly._type_string == "image" and ly.ndim == 3 and _is_scan(ly)]


def _is_scan(layer) -> bool:
    return layer.metadata.get("kind") not in ("heatmap", "similarity", "compare-anatomy")


class ExplainWidget(QWidget):
    """Run an attribution method on a scan layer and show it as overlays.

    Signals
    -------
    explained(object)
        The :class:`~napari_mlmi_interp.explain.Explanation`, after its layers are added.
    """

    explained = Signal(object)

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._models: dict[str, Any] = {}
        self._inputs: dict[tuple[int, str], Any] = {}
        self._token: CancelToken | None = None
        self._worker = None
        self._adding = False
        self._bridge = ProgressBridge()
        self._bridge.progress.connect(self._on_progress)
        self.last_result: Explanation | None = None
        self.progress_seen: list[tuple[int, int]] = []

        self.scan = QComboBox()
        self.model = QComboBox()
        self.method = QComboBox()
        self.target = QComboBox()
        self.params_form = QFormLayout()
        self.param_widgets: dict[str, QWidget] = {}
        self.percent = QDoubleSpinBox()
        self.percent.setRange(0.5, 50.0)
        self.percent.setSingleStep(0.5)
        self.percent.setValue(DEFAULT_TOPK_PERCENT)  # the sidebar's, evaluate's and batch's k
        self.percent.setSuffix(" %")
        self.percent.setToolTip("the contour outlines the top k % most attributed voxels")
        from ..explain.budget import default_budget_mb

        self.budget = QSpinBox()
        self.budget.setRange(64, 1_000_000)
        self.budget.setSingleStep(256)
        self.budget.setValue(int(default_budget_mb()))
        self.budget.setSuffix(" MB")
        self.budget.setToolTip("memory for internal batches (Integrated Gradients, SmoothGrad, occlusion)")
        self.blending = QComboBox()
        self.blending.addItems(["translucent", "additive"])
        self.blending.setToolTip("how heatmaps combine with the anatomy")
        self.shared = QCheckBox("one scale for all heatmaps (fair comparison)")
        self.shared.setToolTip(
            "off: each heatmap is scaled by its own 99.5th percentile; on: all by the largest of those"
        )
        self.surface = QCheckBox("isosurface for the 3D view")
        self.surface.setChecked(True)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.compare_button = QPushButton("Compare heatmaps side by side")
        self.compare_button.setCheckable(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Pick a scan, a model and a method, then Run.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("scan", self.scan)
        form.addRow("model", self.model)
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self.params_form)
        overlay = QFormLayout()
        overlay.addRow("memory budget", self.budget)
        overlay.addRow("contour: top", self.percent)
        overlay.addRow("heatmap blending", self.blending)
        overlay.addRow("", self.shared)
        overlay.addRow("", self.surface)
        layout.addLayout(overlay)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.compare_button)
        layout.addStretch(1)

        self._fill_models()
        self.refresh_layers()
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.method.currentIndexChanged.connect(self._on_method_changed)
        self.scan.currentIndexChanged.connect(self._update_costs)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.percent.valueChanged.connect(self._on_percent)
        self.blending.currentTextChanged.connect(self._on_blending)
        self.shared.toggled.connect(lambda _on: self._apply_scales())
        self.compare_button.toggled.connect(self._on_compare)
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            if hasattr(events, name):
                getattr(events, name).connect(self._on_layers_changed)
        self._on_model_changed()

    # -- choices -----------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        self.model.blockSignals(True)
        self.model.clear()
        for spec in available_models():
            self.model.addItem(spec.name, spec.name)
        for name in self._models:
            if self.model.findData(name) < 0:
                self.model.addItem(f"{self._models[name].spec.name} (file)", name)
        self.model.addItem(FROM_FILE, FROM_FILE)
        self.model.blockSignals(False)

    def _on_layers_changed(self, event=None) -> None:
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """Re-list scan layers (and ROI layers), keeping the current choices when they still exist."""
        current = self.scan.currentText()
        self.scan.blockSignals(True)
        self.scan.clear()
        for layer in _image_layers(self.viewer):
            self.scan.addItem(layer.name)
        index = self.scan.findText(current)
        self.scan.setCurrentIndex(index if index >= 0 else 0)
        self.scan.blockSignals(False)
        self._fill_targets()
        self._update_costs()

    def _loaded(self, key: str | None = None):
        key = key or self.model.currentData()
        if key in (None, FROM_FILE):
            return None
        if key not in self._models:
            self._models[key] = resolve_model(key)
        return self._models[key]

    def _on_model_changed(self, *_: Any) -> None:
        if self.model.currentData() == FROM_FILE:
            path, _filter = QFileDialog.getOpenFileName(
                self, "Model spec or weights", "", "Model (*.json *.yaml *.yml *.pt *.pth *.ts)"
            )
            if not path:
                self.model.setCurrentIndex(0)
                return
            try:
                self._models[path] = resolve_model(path)
            except (ModelError, OSError, ValueError) as exc:
                self._error(str(exc))
                self.model.setCurrentIndex(0)
                return
            self._fill_models()
            self.model.setCurrentIndex(self.model.findData(path))
            return
        try:
            self._loaded()
        except (ModelError, OSError, ValueError) as exc:
            self._error(str(exc))
        self._fill_methods()
        self._fill_targets()

    def _fill_methods(self) -> None:
        model = self._safe_model()
        has_layer = bool(model and model.spec.cam_layers)
        current = self.method.currentData()
        methods = sorted(
            [m for m in list_methods() if has_layer or not m.needs_layer],
            key=lambda m: (RECOMMENDED.index(m.name) if m.name in RECOMMENDED else len(RECOMMENDED), m.title),
        )
        self.method.blockSignals(True)
        self.method.clear()
        for m in methods:
            self.method.addItem(m.title, m.name)
        index = self.method.findData(current)
        self.method.setCurrentIndex(index if index >= 0 else 0)
        self.method.blockSignals(False)
        self._on_method_changed()

    def _fill_targets(self) -> None:
        model = self._safe_model()
        current = self.target.currentText()
        self.target.clear()
        if model is None:
            return
        if model.spec.task == "classification":
            self.target.addItem(PREDICTED, None)
            for c in model.spec.classes:
                self.target.addItem(c, c)
        else:
            self.target.addItem(MODEL_PREDICTION, None)
            for layer in self.viewer.layers:
                if (
                    layer._type_string == "labels"
                    and layer.ndim == 3
                    and layer.metadata.get("kind") != "contour"
                ):
                    self.target.addItem(f"ROI: {layer.name}", ("layer", layer.name))
        index = self.target.findText(current)
        self.target.setCurrentIndex(index if index >= 0 else 0)

    def _on_method_changed(self, *_: Any) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.param_widgets = {}
        name = self.method.currentData()
        if not name:
            return
        for key, default in get_method(name).params.items():
            if key in HIDDEN_PARAMS:
                continue
            widget = _param_widget(key, default)
            widget.setObjectName(key)
            self.param_widgets[key] = widget
            self.params_form.addRow(key.replace("_", " "), widget)
            signal = getattr(widget, "valueChanged", None) or getattr(widget, "currentIndexChanged", None)
            if signal is not None:
                signal.connect(self._update_costs)
        self._update_costs()

    def params(self) -> dict[str, Any]:
        """The parameters from the form (hidden ones keep their defaults)."""
        out = {}
        for key, w in self.param_widgets.items():
            if isinstance(w, QCheckBox):
                out[key] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[key] = w.currentText()
            else:
                out[key] = w.value()
        return out

    def _update_costs(self, *_: Any) -> None:
        """Label each method with its estimated cost on the current scan and model."""
        model = self._safe_model()
        if model is None or not self.method.count():
            return
        try:
            shape = self._model_grid_shape(model)
        except Exception:  # an unusual layer: no estimate rather than a broken widget
            return
        for i in range(self.method.count()):
            m = get_method(self.method.itemData(i))
            params = {**m.params, **(self.params() if m.name == self.method.currentData() else {})}
            fwd, bwd = m.cost(params, shape)
            self.method.setItemText(i, f"{m.title} — {fwd} forward + {bwd} backward passes")

    def _model_grid_shape(self, model) -> tuple[int, ...]:
        from ..models.predict import preprocessor_for

        layer = self._scan_layer()
        if layer is None:
            return tuple(model.spec.input.size or (64, 64, 64))
        grid = preprocessor_for(model).grid_for(volume_of_layer(layer).geometry)
        return tuple(grid.shape)

    def _safe_model(self):
        try:
            return self._loaded()
        except Exception:
            return None

    def _scan_layer(self):
        name = self.scan.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the explanation in a worker thread (returns at once)."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return
        layer = self._scan_layer()
        model = self._safe_model()
        method = self.method.currentData()
        if layer is None or model is None or not method:
            self._error("choose a scan layer, a model and a method first")
            return
        target = self.target.currentData()
        roi = None
        try:
            volume = volume_of_layer(layer)
            if isinstance(target, tuple):
                roi = volume_of_layer(self.viewer.layers[target[1]]).array
                target = None
        except (ValueError, KeyError) as exc:  # a 2D or sheared layer, a ROI layer deleted meanwhile
            self._error(str(exc))
            return
        params = self.params()
        key = (id(volume), model.sha256)
        model_input = self._inputs.get(key)
        token = CancelToken()
        self._token = token
        self.progress_seen = []
        self.progress.setRange(0, 0)  # busy until the first report
        self.status.setText(f"Running {get_method(method).title} with {model.spec.name}…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        bridge = self._bridge
        budget = float(self.budget.value())

        report = bridge.reporter(token)

        overlay = {
            "scan_name": layer.name,
            "percent": self.percent.value(),
            "surface": self.surface.isChecked(),
        }

        def work():
            result = explain(
                volume,
                model,
                method,
                target=target,
                roi=roi,
                params=params,
                model_input=model_input,
                progress=report,
                cancel=token,
                memory_budget_mb=budget,
            )
            # the layers' data (scaling, top-k, marching cubes) is made here too: the GUI
            # thread only adds the layers
            return result, explanation_layer_data(
                result, method_title=get_method(result.method).title, model=model, scan=volume, **overlay
            )

        worker = create_worker(work, _ignore_errors=True)
        worker.returned.connect(lambda out: self._on_done(out[0], out[1], key))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def cancel(self) -> None:
        """Ask the running explanation to stop (within one batch)."""
        if self._token is not None:
            self._token.cancel()
            self.status.setText("Cancelling…")

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel a running explanation and wait for its thread (when the panel closes)."""
        self.cancel()
        wait_while_busy(self, timeout_s)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_seen.append((done, total))
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, total))

    def _on_done(self, result: Explanation, layer_data: dict, key) -> None:
        self._inputs = {key: result.prediction.model_input}  # one prepared input kept (memory)
        if self._token is not None and self._token.cancelled:
            return
        # one layer per event-loop turn: the GUI never waits on all of them at once
        self._adding = True
        kinds = list(layer_data)
        added: dict[str, Any] = {}

        def step() -> None:
            kind = kinds.pop(0)
            added.update(
                add_explanation_layers(self.viewer, {kind: layer_data[kind]}, replace=kind == kinds_all[0])
            )
            if kinds:
                QTimer.singleShot(0, step)
            else:
                self._report(result, added)

        kinds_all = list(kinds)
        step()

    def show_result(
        self, result: Explanation, scan_name: str | None = None, *, model: Any = None, scan: Any = None
    ) -> dict[str, Any]:
        """Add the overlay layers of ``result`` at once and report it (used by the demo)."""
        layer_data = explanation_layer_data(
            result,
            scan_name=scan_name or result.native.name,
            method_title=get_method(result.method).title,
            percent=self.percent.value(),
            surface=self.surface.isChecked(),
            model=model,
            scan=scan,
        )
        layers = add_explanation_layers(self.viewer, layer_data)
        self._report(result, layers)
        return layers

    @property
    def busy(self) -> bool:
        """Whether a run is in progress or its layers are still being added."""
        return self._worker is not None or self._adding

    def _report(self, result: Explanation, layers: dict[str, Any]) -> None:
        self._adding = False
        self.last_result = result
        if "heatmap" in layers:
            layers["heatmap"].blending = self.blending.currentText()
            if self.shared.isChecked():
                self._apply_scales()
        pred = result.prediction
        if pred.probabilities is not None:
            said = f"{pred.label} (p = {pred.probabilities[pred.predicted]:.3f})"
        else:
            said = ", ".join(f"{c}: {ml:.2f} mL" for c, ml in pred.volumes_ml.items()) or "nothing segmented"
        peak = ", ".join(f"{v:.1f}" for v in result.peak_lps())
        self.status.setText(
            f"{pred.model}: {said}. {get_method(result.method).title} for '{result.target['name']}' in "
            f"{result.timings.get('total', 0):.2f} s; peak at LPS ({peak}) mm."
            + "".join(f"\n⚠ {w}" for w in result.warnings)
        )
        if result.warnings:  # out of domain, or a map that misses completeness: say so where it shows
            from napari.utils.notifications import show_warning

            show_warning(f"{pred.model}, {get_method(result.method).title}: " + " ".join(result.warnings))
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.explained.emit(result)

    def _on_error(self, exc: Exception) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if isinstance(exc, Cancelled):
            self.status.setText("Cancelled: no layer added.")
            return
        self._error(
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError | ModelError) else str(exc)
        )

    def _on_finished(self) -> None:
        self._worker = None
        self._token = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)

    # -- overlays ----------------------------------------------------------------------------------
    def _on_percent(self, value: float) -> None:
        for layer in list(self.viewer.layers):
            if layer.metadata.get("kind") == "contour":
                set_contour_percent(layer, value)

    def _heatmaps(self) -> list:
        return [ly for ly in self.viewer.layers if ly.metadata.get("kind") == "heatmap"]

    def _on_blending(self, mode: str) -> None:
        for layer in self._heatmaps():
            layer.blending = mode

    def _apply_scales(self) -> None:
        """Shared scale on: every heatmap divided by the largest robust scale; off: their own."""
        rescale_heatmaps(self._heatmaps(), None if self.shared.isChecked() else 0)

    def _on_compare(self, on: bool) -> None:
        if not on:
            end_compare(self.viewer)
            return
        heatmaps = [ly for ly in self.viewer.layers if ly.metadata.get("kind") == "heatmap"]
        anatomy = self._scan_layer()
        if len(heatmaps) < 2 or anatomy is None:
            self._error("compare needs a scan and two or more heatmaps: run two methods first")
            self.compare_button.setChecked(False)
            return
        compare_layers(self.viewer, heatmaps, anatomy)


def _param_widget(key: str, default: Any) -> QWidget:
    if isinstance(default, bool):
        w = QCheckBox()
        w.setChecked(default)
        return w
    if isinstance(default, str):
        w = QComboBox()
        for choice in _CHOICES.get(key, [default]):
            w.addItem(choice)
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
