"""A linked three-plane view: axial, coronal and sagittal beside the main canvas, one crosshair.

napari 0.9 has one canvas per viewer (a multi-canvas viewer is napari/napari#5348), so, as
napari's own ``examples/multiple_viewer_widget.py`` does, each plane is a
:class:`napari.components.ViewerModel` shown by a :class:`napari.qt.QtViewer` (public
exports) in a splitter docked under the main canvas. Each holds a copy of every main layer
(``Layer.create(*layer.as_layer_data_tuple())``: the same data array, no copy of the
voxels), kept in step on insertion, removal, visibility, opacity, contrast limits and
colormap; each is arranged in its plane by
:func:`~napari_mlmi_interp.overlays.set_radiological_view` (letters included). A click in
any canvas (main or plane) moves the crosshair, a point in LPS mm shown in every view, and
every view's slices to that point.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSplitter, QVBoxLayout, QWidget

__all__ = ["PLANES", "ThreePlaneView", "toggle_three_planes"]

PLANES = ("axial", "coronal", "sagittal")
CROSSHAIR = "crosshair"
#: Layer properties kept in step between the main viewer and the planes.
SYNCED = ("visible", "opacity", "contrast_limits", "colormap", "blending")


class ThreePlaneView(QWidget):
    """Three linked planes of ``viewer``'s layers, with a shared crosshair (LPS mm)."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        from napari.components import ViewerModel
        from napari.qt import QtViewer

        super().__init__(parent)
        self.viewer = viewer
        self.models = {plane: ViewerModel(title=plane) for plane in PLANES}
        self.canvases = {
            plane: QtViewer(model, show_welcome_screen=False) for plane, model in self.models.items()
        }
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for canvas in self.canvases.values():
            splitter.addWidget(canvas)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._syncing = False
        self._connections: list[tuple[Any, Any]] = []  # (emitter, callback) on the main viewer
        for layer in viewer.layers:
            if layer.name != CROSSHAIR:
                self._copy(layer)
        for plane, model in self.models.items():
            _arrange(model, plane)
            model.mouse_drag_callbacks.append(self._clicked)
        viewer.mouse_drag_callbacks.append(self._clicked)
        self._connect(viewer.layers.events.inserted, self._inserted)
        self._connect(viewer.layers.events.removed, self._removed)
        self.point: np.ndarray | None = None
        if viewer.dims.ndim == 3:
            self.move_to(np.asarray(viewer.dims.point, dtype=float))

    # -- layers ------------------------------------------------------------------------------
    def _copy(self, layer: Any) -> None:
        from napari.layers import Layer

        copies = []
        for model in self.models.values():
            copy = Layer.create(*layer.as_layer_data_tuple())
            copy.metadata = dict(layer.metadata)  # the roles (letters, readout) follow
            model.layers.append(copy)
            copies.append(copy)
        for prop in SYNCED:
            emitter = getattr(layer.events, prop, None)
            if emitter is not None:
                self._connect(emitter, lambda event, p=prop, src=layer, out=copies: self._sync(src, p, out))

    def _connect(self, emitter: Any, callback: Any) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    def _sync(self, source: Any, prop: str, copies: list) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            for copy in copies:
                setattr(copy, prop, getattr(source, prop))
        finally:
            self._syncing = False

    def _inserted(self, event: Any) -> None:
        layer = event.value
        if layer.name != CROSSHAIR:
            self._copy(layer)
            for plane, model in self.models.items():
                if len(model.layers) == 1:
                    _arrange(model, plane)

    def _removed(self, event: Any) -> None:
        name = event.value.name
        for model in self.models.values():
            if name in model.layers:
                model.layers.remove(name)

    # -- the crosshair -----------------------------------------------------------------------
    def _clicked(self, source: Any, event: Any) -> None:
        if event.type == "mouse_press" and len(event.position) == 3:
            self.move_to(np.asarray(event.position, dtype=float))

    def move_to(self, lps: np.ndarray) -> None:
        """Every view's slices and the crosshair to the LPS point ``lps`` (mm)."""
        self.point = np.asarray(lps, dtype=float)
        for view in (self.viewer, *self.models.values()):
            view.dims.point = tuple(float(c) for c in self.point)
            _crosshair(view, self.point)

    def close_views(self) -> None:
        """Disconnect from the main viewer and release the planes' canvases."""
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections.clear()
        if self._clicked in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._clicked)
        if CROSSHAIR in self.viewer.layers:
            self.viewer.layers.remove(CROSSHAIR)
        for canvas in self.canvases.values():
            canvas.close()


def _arrange(model: Any, plane: str) -> None:
    from ..overlays import set_radiological_view

    if model.dims.ndim == 3:
        set_radiological_view(model, plane)


def _crosshair(view: Any, lps: np.ndarray) -> None:
    """A '+' at ``lps`` in ``view`` (one Points layer, on top, in world LPS mm)."""
    if CROSSHAIR in view.layers:
        layer = view.layers[CROSSHAIR]
        layer.data = lps[None]
    else:
        active = view.layers.selection.active
        layer = view.add_points(
            lps[None], name=CROSSHAIR, symbol="cross", size=12, face_color="#00e5ff", border_width=0
        )
        view.layers.selection.active = active  # the reader's layer stays the one selected
    index = view.layers.index(layer)
    if index != len(view.layers) - 1:
        view.layers.move(index, len(view.layers))


_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def toggle_three_planes(viewer: Any) -> ThreePlaneView | None:
    """Show the linked three-plane view docked under ``viewer``'s canvas, or close it; the view."""
    if viewer in _OPEN:
        dock, view = _OPEN.pop(viewer)
        view.close_views()
        viewer.window.remove_dock_widget(dock)
        return None
    view = ThreePlaneView(viewer)
    _OPEN[viewer] = (viewer.window.add_dock_widget(view, name="Three planes", area="bottom"), view)
    return view
