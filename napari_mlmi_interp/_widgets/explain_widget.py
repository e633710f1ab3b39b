"""The "Explain" dock widget: scan, model, method, target, parameters; Run / Cancel; overlays.

Thin: choices go to :func:`napari_mlmi_interp.explain.explain` through a
:class:`~._widgets.jobs.JobRunner` (a napari worker thread: the GUI never waits on the
model, its loading included); progress comes back through a Qt signal (queued to the GUI
thread); results become layers through :mod:`napari_mlmi_interp.overlays`.
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
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import MlmiError
from ..explain import Explanation, explain, get_method, list_methods
from ..explain.targets import roi_choices, roi_request
from ..framework.settings import DEFAULT_TOPK_PERCENT
from ..models import available_models
from ..models.held import held_models
from ..overlays import (
    add_explanation_layers,
    compare_layers,
    end_compare,
    explanation_layer_data,
    rescale_heatmaps,
    set_contour_percent,
    volume_of_layer,
)
from ..overlays.roles import Role, layers_of, role_of
from .choices import refill_scans
from .jobs import JobRunner, describe_error
from .param_widgets import choice_note, param_widget

#: Shown first: the methods a reader most often wants, cheapest first.
RECOMMENDED = ("gradcam", "integrated_gradients", "smoothgrad", "occlusion", "gradcam_pp")
#: Parameters not offered in the form (resolved automatically or fixed for reproducibility).
HIDDEN_PARAMS = {"internal_batch_size", "nt_samples_batch_size", "perturbations_per_eval", "seed"}
FROM_FILE = "From file…"
PREDICTED = "predicted class"


class ExplainWidget(QWidget):
    """Run an attribution method on a scan layer and show it as overlays.

    The model is loaded (weights read, network built) in the explanation's own worker
    thread, or, for a model picked from a file, by a loading job whose end a Run waits for.

    Signals
    -------
    explained(object)
        The :class:`~napari_mlmi_interp.explain.Explanation`, after its layers are added.
    """

    explained = Signal(object)

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._specs: dict[str, Any] = {}
        self._file_models: dict[str, str] = {}  # models loaded from files: path -> model name
        self._inputs: dict[tuple[int, str], Any] = {}
        self._adding = False
        self._run_queued = False
        self.last_result: Explanation | None = None
        self.progress_seen: list[tuple[int, int]] = []
        self._build_choices()
        self._build_overlay_options()
        self._build_run_controls()
        self._lay_out()
        self.jobs = JobRunner(
            self, progress=self.progress, cancel_button=self.cancel_button, status=self.status
        )
        self.jobs.cancelled_text = "Cancelled: no layer added."
        self.jobs.progressed.connect(lambda done, total: self.progress_seen.append((done, total)))
        self.jobs.busy_changed.connect(lambda busy: self.run_button.setEnabled(not busy))
        self.loader = JobRunner(self, status=self.status)  # models picked from a file
        self._fill_models()
        self.refresh_layers()
        self._connect()
        self._on_model_changed()

    # -- building the panel ------------------------------------------------------------------------
    def _build_choices(self) -> None:
        self.scan = QComboBox()
        self.model = QComboBox()
        self.method = QComboBox()
        self.target = QComboBox()
        self.roi = QComboBox()  # segmentation: where the target's logits are scored
        self.roi.setToolTip("segmentation: the target class's logits are summed inside this ROI")
        # "why did it call this region X?": the model's segmentation of X makes X the target,
        # as --roi-label does in the command line (the target can still be changed after)
        self.roi.currentIndexChanged.connect(self._roi_changed)
        self.roi_label = QLineEdit()
        self.roi_label.setPlaceholderText("all labels")
        self.roi_label.setToolTip("ROI from a Labels layer: a class name or a label value (empty: any label)")
        self.params_form = QFormLayout()
        self.param_widgets: dict[str, QWidget] = {}

    def _build_overlay_options(self) -> None:
        from ..explain.budget import default_budget_mb

        self.percent = QDoubleSpinBox()
        self.percent.setRange(0.5, 50.0)
        self.percent.setSingleStep(0.5)
        self.percent.setValue(DEFAULT_TOPK_PERCENT)  # the sidebar's, evaluate's and batch's k
        self.percent.setSuffix(" %")
        self.percent.setToolTip("the contour outlines the top k % most attributed voxels")
        self.budget = QSpinBox()
        self.budget.setRange(64, 1_000_000)
        self.budget.setSingleStep(256)
        self.budget.setValue(int(default_budget_mb()))
        self.budget.setSuffix(" MB")
        self.budget.setToolTip(
            "memory for internal batches (Integrated Gradients, SmoothGrad, occlusion); "
            "a method of one sample (Saliency, Grad-CAM) is refused only when its one sample "
            "does not fit in the free memory"
        )
        self.blending = QComboBox()
        self.blending.addItems(["translucent", "additive"])
        self.blending.setToolTip("how heatmaps combine with the anatomy")
        self.shared = QCheckBox("one scale for all heatmaps (fair comparison)")
        self.shared.setToolTip(
            "off: each heatmap is scaled by its own 99.5th percentile; on: all by the largest of those"
        )
        self.surface = QCheckBox("isosurface for the 3D view")
        self.surface.setChecked(True)

    def _build_run_controls(self) -> None:
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.compare_button = QPushButton("Compare heatmaps side by side")
        self.compare_button.setCheckable(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Pick a scan, a model and a method, then Run.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("scan", self.scan)
        form.addRow("model", self.model)
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        form.addRow("ROI", self.roi)
        form.addRow("ROI label", self.roi_label)
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

    def _connect(self) -> None:
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.method.currentIndexChanged.connect(self._on_method_changed)
        self.scan.currentIndexChanged.connect(self._update_costs)
        self.run_button.clicked.connect(self.run)
        self.percent.valueChanged.connect(self._on_percent)
        self.blending.currentTextChanged.connect(self._on_blending)
        self.shared.toggled.connect(lambda _on: self._apply_scales())
        self.compare_button.toggled.connect(self._on_compare)
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            if hasattr(events, name):
                getattr(events, name).connect(self._on_layers_changed)

    # -- choices -----------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        self.model.blockSignals(True)
        self.model.clear()
        self._specs = {spec.name: spec for spec in available_models()}
        for name in self._specs:
            self.model.addItem(name, name)
        for path in self._file_models:
            if self.model.findData(path) < 0:
                self.model.addItem(f"{self._file_models[path]} (file)", path)
        self.model.addItem(FROM_FILE, FROM_FILE)
        self.model.blockSignals(False)

    def _on_layers_changed(self, event=None) -> None:
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """Re-list scan layers (and ROI layers), keeping the current choices when they still exist."""
        refill_scans(self.scan, self.viewer)
        self._fill_targets()
        self._update_costs()

    def _spec(self, key: str | None = None):
        """The chosen model's spec (known without loading its weights); None for none."""
        key = key or self.model.currentData()
        if key in self._specs:
            return self._specs[key]
        model = held_models().get(held_models().key_for(key)) if key not in (None, FROM_FILE) else None
        return model.spec if model is not None else None

    def _on_model_changed(self, *_: Any) -> None:
        if self.model.currentData() == FROM_FILE:
            path, _filter = QFileDialog.getOpenFileName(
                self,
                "Model: a spec, weights, .pt2, .onnx, or a MONAI bundle's configs/metadata.json",
                "",
                "Model (*.json *.yaml *.yml *.pt *.pth *.ts *.pt2 *.onnx)",
            )
            self.model.setCurrentIndex(0)
            if path:
                self.load_model_file(path)
            return
        self._fill_methods()
        self._fill_targets()

    def load_model_file(self, path: str) -> None:
        """Load a model from a spec or weights file off the GUI thread, then choose it."""

        def loaded(model) -> None:
            self._file_models[path] = model.spec.name
            self._fill_models()
            self.model.setCurrentIndex(self.model.findData(path))
            self.status.setText(f"Loaded {model.spec.name} from {path}.")

        self.loader.start(
            lambda _token, _report: held_models().resolve(path),
            on_done=loaded,
            on_error=lambda exc: self._error(_message(exc)),
            on_finished=self._run_if_queued,
            busy_text=f"Loading the model from {path}…",
        )

    def _run_if_queued(self) -> None:
        if self._run_queued:
            self._run_queued = False
            self.run()

    def _fill_methods(self) -> None:
        spec = self._spec()
        has_layer = bool(spec and spec.cam_layers)
        # a torch.export program runs nn.ReLU as functions: no method that overrides those modules
        program = spec is not None and (spec.format == "torch_export" or str(spec.weights).endswith(".pt2"))
        current = self.method.currentData()
        methods = sorted(
            [
                m
                for m in list_methods()
                if (has_layer or not m.needs_layer) and not (program and m.overrides_nonlinearities)
            ],
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
        """Classes (a classifier: or the predicted one); a segmenter's ROIs (:func:`roi_choices`)."""
        from napari.layers import Labels

        spec = self._spec()
        current, current_roi = self.target.currentText(), self.roi.currentText()
        self.target.clear()
        self.roi.clear()
        segmenter = spec is not None and spec.task != "classification"
        self.roi.setEnabled(segmenter)
        self.roi_label.setEnabled(segmenter)
        if spec is None:
            return
        if not segmenter:
            self.target.addItem(PREDICTED, None)
        for c in spec.classes:
            self.target.addItem(c, c)
        if segmenter:
            names = [ly.name for ly in self.viewer.layers if isinstance(ly, Labels) and ly.ndim == 3]
            names = [n for n in names if role_of(self.viewer.layers[n]) is not Role.CONTOUR]
            for text, choice in roi_choices(list(spec.classes), names):
                self.roi.addItem(text, choice)
            self.roi.setCurrentIndex(max(0, self.roi.findText(current_roi)))
        index = self.target.findText(current)
        self.target.setCurrentIndex(index if index >= 0 else int(segmenter and len(spec.classes) > 1))

    def _roi_changed(self, *_: Any) -> None:
        kind, _, name = str(self.roi.currentData() or "").partition(":")
        index = self.target.findText(name) if kind == "class" else -1
        if index >= 0:
            self.target.setCurrentIndex(index)

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
            widget = param_widget(key, default)
            widget.setObjectName(key)
            self.param_widgets[key] = widget
            self.params_form.addRow(key.replace("_", " "), widget)
            signal = getattr(widget, "valueChanged", None) or getattr(widget, "currentIndexChanged", None)
            if signal is not None:
                signal.connect(self._update_costs)
            if isinstance(widget, QComboBox) and choice_note(key, widget.currentText()):
                widget.currentTextChanged.connect(lambda text, key=key: self._say_choice(key, text))
        self._update_costs()

    def _say_choice(self, key: str, value: str) -> None:
        """What a chosen value means, where the panel reports (an approximation says how far off)."""
        self.status.setText(f"{key.replace('_', ' ')} {value}: {choice_note(key, value)}")

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
        spec = self._spec()
        if spec is None or not self.method.count():
            return
        try:
            shape = self._model_grid_shape(spec)
        except Exception:  # an unusual layer: no estimate rather than a broken widget
            return
        from ..explain.timing import cost_label, known_timing

        # minutes once a pass of this model on this grid was timed (the sidebar times it)
        timing = known_timing(held_models().key_for(self.model.currentData() or ""), shape)
        # a model that crops its input to the foreground sees a smaller grid than this one:
        # the counts are then an upper bound (the crop is known only once the scan is cropped)
        bound = " (at most: before the crop)" if getattr(spec.input, "crop", None) else ""
        for i in range(self.method.count()):
            m = get_method(self.method.itemData(i))
            params = {**m.params, **(self.params() if m.name == self.method.currentData() else {})}
            self.method.setItemText(i, cost_label(m, shape, timing, params=params) + bound)

    def _model_grid_shape(self, spec) -> tuple[int, ...]:
        """The grid the model sees the current scan on (its preprocessing's output), voxels."""
        from ..models import Preprocessor

        layer = self._scan_layer()
        if layer is None:
            return tuple(spec.input.size or (64, 64, 64))
        grid = Preprocessor(spec.input, spec.normalization).grid_for(volume_of_layer(layer).geometry)
        return tuple(grid.shape)

    def _scan_layer(self):
        name = self.scan.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the explanation in a worker thread (returns at once).

        The model is loaded in that thread when it is not held yet; while a model file is
        still loading, the run starts once it has.
        """
        if self.loader.busy:
            self._run_queued = True
            self.status.setText("The run starts once the model has loaded…")
            return
        if self.jobs.busy:
            return
        layer = self._scan_layer()
        source = self.model.currentData()
        spec = self._spec(source)
        method = self.method.currentData()
        if layer is None or spec is None or not method:
            self._error("choose a scan layer, a model and a method first")
            return
        try:
            volume = volume_of_layer(layer)
            rois = roi_request(
                self.roi.currentData() if self.roi.isEnabled() else None,
                self.roi_label.text(),
                list(spec.classes),
                lambda name: volume_of_layer(self.viewer.layers[name]).array,
            )
        except (ValueError, KeyError) as exc:  # a 2D or sheared layer, a ROI layer deleted, no such label
            self._error(str(exc).strip("'\""))
            return
        key = (id(volume), source)
        options = {
            "target": self.target.currentData(),
            **rois,
            "params": self.params(),
            "model_input": self._inputs.get(key),
            "memory_budget_mb": float(self.budget.value()),
        }
        overlay = {
            "scan_name": layer.name,
            "percent": self.percent.value(),
            "surface": self.surface.isChecked(),
        }
        self.progress_seen = []
        self.jobs.start(
            lambda token, report: _explain_job(volume, source, method, options, overlay, token, report),
            on_done=lambda out: self._on_done(out[0], out[1], key),
            on_error=self._on_error,
            busy_text=f"Running {get_method(method).title} with {spec.name}…",
        )

    def cancel(self) -> None:
        """Ask the running explanation to stop (within one batch)."""
        self.jobs.cancel()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel a running explanation and wait for its thread (when the panel closes)."""
        self.loader.shutdown(timeout_s)
        self.jobs.shutdown(timeout_s)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def _on_done(self, result: Explanation, layer_data: dict, key) -> None:
        self._inputs = {key: result.prediction.model_input}  # one prepared input kept (memory)
        # one layer per event-loop turn, each after the timers already due: the GUI never waits
        # on all of them at once (chained zero-delay calls ran back to back before any timer,
        # a 200 ms freeze for the heatmap and the contour together)
        self._adding = True
        kinds = list(layer_data)
        added: dict[str, Any] = {}

        def step() -> None:
            kind = kinds.pop(0)
            added.update(
                add_explanation_layers(self.viewer, {kind: layer_data[kind]}, replace=kind == kinds_all[0])
            )
            if kinds:
                QTimer.singleShot(_NEXT_LAYER_MS, step)
            else:
                self._report(result, added)

        kinds_all = list(kinds)
        step()

    def show_result(
        self, result: Explanation, scan_name: str | None = None, *, model: Any = None
    ) -> dict[str, Any]:
        """Add the overlay layers of ``result`` at once and report it (used by the demo).

        ``model`` (the LoadedModel that made it) is held and its key kept on the heatmap, so
        the framework sidebar can compute the model's evidence; the sidebar finds the scan
        through the scan layer (``overlays.roles.scan_for``).
        """
        layer_data = explanation_layer_data(
            result,
            scan_name=scan_name or result.native.name,
            method_title=get_method(result.method).title,
            percent=self.percent.value(),
            surface=self.surface.isChecked(),
            model=model,
        )
        layers = add_explanation_layers(self.viewer, layer_data)
        self._report(result, layers)
        return layers

    @property
    def busy(self) -> bool:
        """Whether a model is loading, a run is in progress or its layers are still being added."""
        return self.loader.busy or self.jobs.busy or self._adding

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
        elif not pred.computed:
            said = "prediction not computed (no pass of the method on the scan itself)"
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

    def _on_error(self, exc: BaseException) -> None:
        self._error(_message(exc))

    def _error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Error: {message}")
        show_error(message)

    # -- overlays ----------------------------------------------------------------------------------
    def _on_percent(self, value: float) -> None:
        for layer in layers_of(self.viewer, Role.CONTOUR):
            set_contour_percent(layer, value)

    def _heatmaps(self) -> list:
        return layers_of(self.viewer, Role.HEATMAP)

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
        heatmaps = self._heatmaps()
        anatomy = self._scan_layer()
        if len(heatmaps) < 2 or anatomy is None:
            self._error("compare needs a scan and two or more heatmaps: run two methods first")
            self.compare_button.setChecked(False)
            return
        compare_layers(self.viewer, heatmaps, anatomy)


#: Delay before adding the next result layer (ms): a timer, not a zero-delay call, so that the
#: events and timers already due run first.
_NEXT_LAYER_MS = 1


def _explain_job(volume, source: str, method: str, options: dict, overlay: dict, token, report) -> tuple:
    """The worker's part of a run: load (or reuse) the model, explain, and make the layers' data.

    The layers' data (scaling, top-k, marching cubes) is made here too: the GUI thread only
    adds the layers.
    """
    model = held_models().resolve(source)
    result = explain(volume, model, method, progress=report, cancel=token, **options)
    data = explanation_layer_data(
        result, method_title=get_method(result.method).title, model=model, **overlay
    )
    return result, data


def _message(exc: BaseException) -> str:
    """The status line for a failed load or run: the message of an error the user can act on."""
    if isinstance(exc, ValueError | OSError | MlmiError):
        return str(exc)
    return describe_error(exc)
