"""napari adapters: volumes and results -> napari LayerData tuples, and view settings.

May import napari; never imports Qt (checked by import-linter).
"""

from __future__ import annotations

from .volume_layers import (
    LPS_AXIS_LABELS,
    contrast_limits,
    geometry_from_layer_state,
    is_label_map,
    layer_volume,
    set_radiological_view,
    viewer_camera,
    volume_layer_data,
)

__all__ = [
    "LPS_AXIS_LABELS",
    "contrast_limits",
    "geometry_from_layer_state",
    "is_label_map",
    "layer_volume",
    "set_radiological_view",
    "viewer_camera",
    "volume_layer_data",
]
