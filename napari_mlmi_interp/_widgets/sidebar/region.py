"""The true region under localization: a Labels layer picked from a list, or drawn.

The picker lists the viewer's Labels layers (not the top-k contours), follows the chosen
one's painting (debounced, so the figures recompute as the reader paints, not at every
brush stroke) and says when the region changed; the panel hands the region to the session.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Labels
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from ...overlays.roles import Role, role_of

__all__ = ["NONE", "RegionPicker"]

NONE = "(none)"
#: Wait this long after the last brush stroke before recomputing (ms).
PAINT_DEBOUNCE_MS = 400


class RegionPicker(QWidget):
    """ "true region" combo and *Annotate* button.

    Signals
    -------
    changed()
        Another layer was chosen, or the chosen one was painted.
    annotate_requested()
        The reader asked to draw a new region.
    """

    changed = Signal()
    annotate_requested = Signal()

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.currentIndexChanged.connect(self._chosen)
        self.annotate_button = QPushButton("Annotate")
        self.annotate_button.setToolTip(
            "Draw the true region as a Labels layer; the figures follow your brush"
        )
        self.annotate_button.clicked.connect(self.annotate_requested)
        row.addWidget(QLabel("true region"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.annotate_button)
        self._painted_timer = QTimer(self)
        self._painted_timer.setSingleShot(True)
        self._painted_timer.setInterval(PAINT_DEBOUNCE_MS)
        self._painted_timer.timeout.connect(self.changed)

    @property
    def drawn(self) -> bool:
        """Whether the chosen region is one the reader drew here (it is saved to the study file)."""
        return self.layer is not None and role_of(self.layer) is Role.ANNOTATION

    def refresh(self) -> None:
        """Re-list the Labels layers, keeping the choice when its layer is still there."""
        region = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(NONE)
        for ly in self.viewer.layers:
            if isinstance(ly, Labels) and role_of(ly) is not Role.CONTOUR:
                self.combo.addItem(ly.name)
        if region and self.combo.findText(region) >= 0:
            self.combo.setCurrentText(region)
        self.combo.blockSignals(False)

    def pick_mask_on(self, geometry: Any) -> Any:
        """When no region is chosen: choose the first Labels layer that is a mask (one label)
        on ``geometry``'s grid (a lesion mask loaded beside the scan); returns it, or None."""
        import numpy as np

        from ...errors import MlmiError
        from ...overlays import volume_of_layer

        if self.layer is not None:
            return None
        for ly in self.viewer.layers:
            if not isinstance(ly, Labels) or role_of(ly) is Role.CONTOUR:
                continue
            try:
                volume = volume_of_layer(ly)
            except (MlmiError, ValueError):
                continue
            values = np.unique(np.asarray(volume.array)[::2, ::2, ::2])
            if volume.geometry.same_grid(geometry, atol_mm=1e-3) and len(values[values != 0]) == 1:
                self.choose(ly)
                return ly
        return None

    def choose(self, layer: Any) -> None:
        """Use ``layer`` (a Labels layer listed here) as the true region."""
        self.combo.setCurrentText(layer.name)

    def _layer_named(self, name: str) -> Any:
        return self.viewer.layers[name] if name and name != NONE and name in self.viewer.layers else None

    def _chosen(self, *_: Any) -> None:
        old = self.layer
        if old is not None:
            try:
                old.events.paint.disconnect(self._painted)
                old.events.data.disconnect(self._painted)
            except (TypeError, ValueError, RuntimeError):
                pass
        layer = self._layer_named(self.combo.currentText())
        self.layer = layer
        if layer is not None:
            layer.events.paint.connect(self._painted)
            layer.events.data.connect(self._painted)
        self.changed.emit()

    def _painted(self, event: Any = None) -> None:
        self._painted_timer.start()
