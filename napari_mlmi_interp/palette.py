"""The colours a map is shown in, defined once for the viewer and the report.

Pure numpy (no napari): ``overlays`` builds napari colormaps from these tables and
``cohort.report`` paints its key slices with :func:`diverging_rgba`, so a signed map reads
the same in both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIVERGING_CONTROLS", "DIVERGING_RGBA", "HEAT_CONTROLS", "HEAT_RGBA", "diverging_rgba"]

#: Sequential colours for non-negative maps: transparent at 0, then dark red, red, orange,
#: yellow at 1 (RGBA at the control points).
HEAT_CONTROLS = np.array([0.0, 0.15, 0.45, 0.75, 1.0])
HEAT_RGBA = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.55, 0.0, 0.0, 0.55],
        [0.95, 0.15, 0.0, 0.8],
        [1.0, 0.6, 0.0, 0.9],
        [1.0, 1.0, 0.35, 1.0],
    ]
)

#: Diverging colours for signed maps, at control points of ``(value + 1) / 2``: blue at -1,
#: transparent at 0, red to yellow at +1 (limits kept symmetric).
DIVERGING_CONTROLS = np.array([0.0, 0.25, 0.42, 0.5, 0.58, 0.75, 1.0])
DIVERGING_RGBA = np.array(
    [
        [0.55, 0.85, 1.0, 1.0],
        [0.0, 0.35, 1.0, 0.85],
        [0.0, 0.1, 0.6, 0.45],
        [0.0, 0.0, 0.0, 0.0],
        [0.6, 0.0, 0.0, 0.45],
        [1.0, 0.2, 0.0, 0.85],
        [1.0, 0.9, 0.3, 1.0],
    ]
)


def diverging_rgba(v: np.ndarray) -> np.ndarray:
    """RGBA floats, shape ``v.shape + (4,)``, of the diverging colours for ``v`` in [-1, 1]."""
    t = (np.asarray(v, dtype=np.float64) + 1) / 2
    return np.stack([np.interp(t, DIVERGING_CONTROLS, DIVERGING_RGBA[:, c]) for c in range(4)], axis=-1)
