"""napari adapters: volumes and results -> napari LayerData tuples, and view settings.

May import napari; never imports Qt (checked by import-linter).
"""

from __future__ import annotations

from .explanation_layers import (
    add_explanation_layers,
    add_layer,
    compare_layers,
    contour_layer_data,
    end_compare,
    explanation_layer_data,
    heatmap_layer_data,
    isosurface_layer_data,
    layer_name,
    rescale_heatmaps,
    robust_scale,
    set_contour_percent,
    shared_scale,
)
from .orientation import orientation_letters, show_orientation_letters
from .readout import add_measurement_layer, cursor_readout, line_lengths_mm
from .volume_layers import (
    LPS_AXIS_LABELS,
    contrast_limits,
    geometry_from_layer_state,
    is_label_map,
    layer_volume,
    set_radiological_view,
    viewer_camera,
    volume_layer_data,
    volume_of_layer,
)
from .windowing import CT_WINDOWS, apply_window, window_choices, window_limits

__all__ = [
    "CT_WINDOWS",
    "LPS_AXIS_LABELS",
    "add_explanation_layers",
    "add_layer",
    "add_measurement_layer",
    "apply_window",
    "compare_layers",
    "contour_layer_data",
    "contrast_limits",
    "cursor_readout",
    "end_compare",
    "explanation_layer_data",
    "geometry_from_layer_state",
    "heatmap_layer_data",
    "is_label_map",
    "isosurface_layer_data",
    "layer_name",
    "layer_volume",
    "line_lengths_mm",
    "orientation_letters",
    "rescale_heatmaps",
    "robust_scale",
    "set_contour_percent",
    "set_radiological_view",
    "shared_scale",
    "show_orientation_letters",
    "viewer_camera",
    "volume_layer_data",
    "volume_of_layer",
    "window_choices",
    "window_limits",
]
