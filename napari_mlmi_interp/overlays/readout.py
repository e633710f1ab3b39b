"""Where the cursor is and what lies there; distances in millimetres.

The status bar of a viewer the plugin arranges reads, after napari's own text,
``LPS (x, y, z) mm · voxel (i, j, k) · <scan> 123 HU · <map> 0.42``: the cursor in patient
millimetres (world coordinates are LPS), the voxel of the first scan layer in the file's
(x, y, z) index order, the scan's value (HU for CT) and every visible map's value there.
napari recomputes its status on each cursor move and overwrites what a mouse callback
wrote, so the text is appended in a ``viewer.events.status`` callback (public API).

:func:`add_measurement_layer` adds a Shapes layer in line mode whose lines are labelled
with their length in mm, computed in world (LPS mm) coordinates.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .roles import Role, role_of, source_volume_of

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "MEASURE_LAYER",
    "add_measurement_layer",
    "cursor_readout",
    "line_lengths_mm",
    "set_readout_ras",
    "show_cursor_readout",
]

#: The name of the measurement layer.
MEASURE_LAYER = "measure (mm)"
_TAG = " · LPS "
_READING: weakref.WeakSet = weakref.WeakSet()
_RAS: weakref.WeakSet = weakref.WeakSet()


def set_readout_ras(viewer: napari.Viewer, on: bool) -> None:
    """Also read the cursor out in RAS mm (3D Slicer's, NIfTI's convention) in ``viewer``."""
    if on:
        _RAS.add(viewer)
    else:
        _RAS.discard(viewer)


def cursor_readout(viewer: napari.Viewer, position: Any = None) -> str:
    """``"LPS (x, y, z) mm · voxel (i, j, k) · scan value · map values"`` at ``position`` (LPS mm).

    ``position`` defaults to the cursor. Empty when the viewer is not 3D LPS. Each value is
    the one of the voxel containing the point, read from the Volume the layer shows (the
    nearest voxel centre through its geometry, whatever slice is displayed); the voxel index
    is the first scan layer's, in the file's (x, y, z) order.
    """
    lps = np.asarray(viewer.cursor.position if position is None else position, dtype=float)
    if lps.shape != (3,) or viewer.dims.ndim != 3:
        return ""
    parts = [f"LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"]
    if viewer in _RAS:  # the same point in RAS (x and y negated), for readers used to NIfTI/Slicer
        parts.append(f"RAS ({-lps[0]:.1f}, {-lps[1]:.1f}, {lps[2]:.1f}) mm")
    scans = [ly for ly in viewer.layers if role_of(ly) is Role.SCAN and ly.visible]
    if scans:
        volume = source_volume_of(scans[0])
        if volume is not None:
            index = np.round(volume.geometry.to_index(lps)).astype(int)
            if np.all(index >= 0) and np.all(index < np.asarray(volume.shape)):
                parts.append(f"voxel ({index[2]}, {index[1]}, {index[0]})")
    for layer in viewer.layers:
        if not layer.visible or role_of(layer) not in (Role.SCAN, Role.HEATMAP):
            continue
        value = _value_at(layer, lps)
        if value is None:
            continue
        unit = " HU" if role_of(layer) is Role.SCAN and _modality(layer) == "CT" else ""
        parts.append(f"{_short(layer.name)} {_number(value)}{unit}")
    return " · ".join(parts)


def _value_at(layer: Any, lps: np.ndarray) -> Any:
    """The layer's value at the voxel containing ``lps``: from the Volume it shows (exact, in
    any slice), else napari's ``get_value`` (the displayed slice); None outside."""
    volume = source_volume_of(layer)
    if volume is None:
        value = layer.get_value(lps, world=True)
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else value
    index = np.round(volume.geometry.to_index(lps)).astype(int)
    if np.any(index < 0) or np.any(index >= np.asarray(volume.shape)):
        return None
    return volume.array[tuple(index)]


def _modality(layer: Any) -> str:
    volume = source_volume_of(layer)
    return getattr(volume, "modality", "")


def _short(name: str) -> str:
    return name if len(name) <= 28 else name[:27] + "…"


def _number(value: Any) -> str:
    """A value as people read it: 4 significant figures, no exponent for everyday sizes."""
    v = float(np.asarray(value).ravel()[0])
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def show_cursor_readout(viewer: napari.Viewer) -> None:
    """Append :func:`cursor_readout` to the status bar of ``viewer`` (idempotent per viewer)."""
    if viewer in _READING:
        return
    _READING.add(viewer)
    ref = weakref.ref(viewer)

    def on_status(event: Any) -> None:
        live = ref()
        status = getattr(event, "value", None)
        if live is None or not isinstance(status, dict) or _TAG in str(status.get("coordinates", "")):
            return
        text = cursor_readout(live)
        if text:
            live.status = {**status, "coordinates": f"{status.get('coordinates', '')}{_TAG[:3]}{text}"}

    viewer.events.status.connect(on_status)


def line_lengths_mm(lines: list) -> list[float]:
    """Length of each polyline (vertices in LPS mm), in mm."""
    out = []
    for line in lines:
        points = np.asarray(line, dtype=float)
        out.append(float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0)
    return out


def add_measurement_layer(viewer: napari.Viewer) -> Any:
    """A Shapes layer (in world LPS mm, line mode) labelling each line with its length in mm.

    Two clicks draw a line; its length (Euclidean, in mm, the slice position included) is
    its text and its ``features["length_mm"]``. Reused when it exists.
    """
    if MEASURE_LAYER in viewer.layers:
        layer = viewer.layers[MEASURE_LAYER]
    else:
        layer = viewer.add_shapes(
            ndim=3,
            name=MEASURE_LAYER,
            edge_color="#ffeb3b",
            edge_width=0.6,
            features={"length_mm": np.zeros(0)},
            text={"string": "{length_mm:.1f} mm", "color": "#ffeb3b", "size": 11, "anchor": "upper_left"},
        )

        def relabel(event: Any = None) -> None:
            layer.features = {"length_mm": line_lengths_mm(list(layer.data))}
            layer.refresh_text()

        layer.events.data.connect(relabel)
    viewer.layers.selection.active = layer
    layer.mode = "add_line"
    return layer
