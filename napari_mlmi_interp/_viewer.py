"""Open volumes in a napari viewer (for the CLI); optionally save a screenshot and close.

napari adapter: imports napari, never Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .io import Volume

__all__ = ["show_volumes"]


def show_volumes(
    layers: list[tuple[Volume, dict[str, Any]]],
    *,
    plane: str | None = None,
    focus_lps: tuple[float, float, float] | None = None,
    screenshot: str | Path | None = None,
    size: tuple[int, int] = (1100, 900),
) -> Path | None:
    """Show ``(volume, layer kwargs)`` pairs in napari, in LPS mm, radiological view.

    With ``screenshot`` the viewer is shown, rendered, saved to that PNG and closed;
    without it napari's event loop runs until the window is closed.
    """
    import napari

    from .overlays import set_radiological_view, volume_layer_data

    viewer = napari.Viewer(title="napari-mlmi-interp", show=True)
    for volume, kwargs in layers:
        data, attrs, layer_type = volume_layer_data(volume, **kwargs)
        viewer._add_layer_from_data(data, attrs, layer_type)
    first = layers[0][0]
    set_radiological_view(viewer, plane or first.geometry.acquisition_plane())
    centre = focus_lps or tuple(first.geometry.to_lps([(s - 1) / 2 for s in first.shape]))
    viewer.dims.point = tuple(float(c) for c in centre)
    if screenshot is None:
        napari.run()
        return None
    viewer.window.resize(*size)
    viewer.reset_view()
    out = Path(screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    if image is None or not np.any(np.asarray(image)[..., :3]):
        raise RuntimeError("the screenshot is blank: no OpenGL rendering (is a display present?)")
    return out
