"""Open volumes in a napari viewer (for the CLI); optionally save a screenshot and close.

napari adapter: imports napari, never Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import MlmiError
from .io import Volume

__all__ = ["DisplayError", "add_volumes", "show_volumes"]


class DisplayError(MlmiError, RuntimeError):
    """A screenshot came out blank: no OpenGL rendering here (no display, or no GL driver)."""


def add_volumes(
    viewer: Any,
    layers: list[tuple[Volume, dict[str, Any]]],
    *,
    plane: str | None = None,
    focus_lps: tuple[float, float, float] | None = None,
) -> list[Any]:
    """Add ``(volume, layer kwargs)`` pairs to ``viewer`` and arrange it radiologically.

    The view Open Sample and the reader give (:func:`~.overlays.volume_layers.show_radiologically`):
    the first volume's acquisition plane (or ``plane``), the slice through ``focus_lps`` (LPS
    mm; default the middle of the first volume), snapped to its grid. Returns the layers.
    """
    from .overlays.volume_layers import add_layer_data, show_radiologically, volume_layer_data

    added = [add_layer_data(viewer, volume_layer_data(volume, **kwargs)) for volume, kwargs in layers]
    show_radiologically(viewer, layers[0][0], plane=plane, focus_lps=focus_lps)
    return added


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

    viewer = napari.Viewer(title="napari-mlmi-interp", show=True)
    add_volumes(viewer, layers, plane=plane, focus_lps=focus_lps)
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
        raise DisplayError("the screenshot is blank: no OpenGL rendering (is a display present?)")
    return out
