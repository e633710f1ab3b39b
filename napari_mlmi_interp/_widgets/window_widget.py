"""A small dock for window/level presets of a scan layer (thin: :mod:`..overlays.windowing` decides)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QPushButton, QWidget

from ..errors import MlmiError
from ..overlays import CT_WINDOWS, add_measurement_layer, apply_window, volume_of_layer, window_choices
from ..overlays.readout import set_readout_ras
from .choices import refill_scans
from .three_planes import toggle_three_planes

__all__ = ["WindowWidget"]

_TIPS = {
    "source": "the window the scan's DICOM header carries",
    "auto": "robust percentiles of the scan's tissue (MR, any scan without HU)",
    **{name: f"level {level:g} HU, width {width:g} HU" for name, (level, width) in CT_WINDOWS.items()},
}


class WindowWidget(QWidget):
    """Reading tools: a window for the scan (its contrast limits), *Measure* (two clicks, the
    length in mm beside the line) and *Three planes* (linked axial, coronal, sagittal)."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.scan = QComboBox()
        self.window = QComboBox()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("scan", self.scan)
        form.addRow("window", self.window)
        self.measure = QPushButton("Measure distance (mm)")
        self.measure.setToolTip("click two points: the line is labelled with its length in mm (LPS)")
        self.measure.clicked.connect(lambda: add_measurement_layer(self.viewer))
        form.addRow(self.measure)
        self.planes = QPushButton("Three planes")
        self.planes.setCheckable(True)
        self.planes.setToolTip("axial, coronal and sagittal under the canvas, linked by a crosshair (click)")
        self.planes.toggled.connect(lambda _on: toggle_three_planes(self.viewer))
        form.addRow(self.planes)
        self.ras = QCheckBox("status bar: also RAS mm")
        self.ras.setToolTip("the cursor in RAS (3D Slicer, NIfTI) beside LPS (DICOM)")
        self.ras.toggled.connect(lambda on: set_readout_ras(self.viewer, on))
        form.addRow(self.ras)
        form.addRow(self.status)
        self.scan.currentIndexChanged.connect(self._fill_windows)
        self.window.activated.connect(self._apply)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """The scan layers the viewer holds (keeps the current one when it is still there)."""
        refill_scans(self.scan, self.viewer)
        self._fill_windows()

    def _layer(self) -> Any:
        name = self.scan.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _fill_windows(self, *_: Any) -> None:
        self.window.clear()
        layer = self._layer()
        if layer is None:
            return
        for i, name in enumerate(window_choices(volume_of_layer(layer))):
            self.window.addItem(name)
            self.window.setItemData(i, _TIPS.get(name, ""), 3)  # Qt.ToolTipRole

    def set_window(self, name: str) -> None:
        """Apply window ``name`` to the chosen scan (as picking it in the list does)."""
        index = self.window.findText(name)
        if index < 0:
            self.status.setText(f"no {name} window for this scan")
            return
        self.window.setCurrentIndex(index)
        self._apply()

    def _apply(self, *_: Any) -> None:
        layer = self._layer()
        if layer is None:
            return
        name = self.window.currentText()
        try:
            low, high = apply_window(layer, volume_of_layer(layer), name)
        except MlmiError as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"{name}: {low:g} to {high:g}")
