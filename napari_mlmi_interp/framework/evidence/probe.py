"""What every phase of the model evidence needs, and what it adds: one :class:`Probe` per run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..settings import FigureSettings
from .bands import Band
from .figures import Figure, judged

__all__ = ["Probe", "RoiTarget"]


@dataclass
class RoiTarget:
    """A segmentation target on the model grid: class ``class_index`` inside ``mask``.

    Attributes
    ----------
    mask : numpy.ndarray
        The ROI, boolean, on the model grid in the model's axis order.
    native : numpy.ndarray
        The same ROI on the scan's grid (z, y, x), as :func:`~napari_mlmi_interp.explain.explain`
        takes it (the randomised models' maps explain the same question).
    reduce : str
        ``'sum'`` or ``'mean'`` of the class's logits in the ROI.
    score_input, score_baseline : float
        The ROI score of the scan and of the baseline: the scaled score is 1 and 0 there.
    voxel_ml : float
        Volume of one voxel of the model grid, in mL.
    """

    class_index: int
    mask: np.ndarray
    native: np.ndarray
    reduce: str
    logits: Callable[[Any], Any]
    score_input: float
    score_baseline: float
    voxel_ml: float


@dataclass
class Probe:
    """The score, the input, the map and the baseline every phase uses, and the figures it adds.

    ``forward`` maps a batch to one score per sample: the class probability (classifier) or
    the ROI score scaled to 1 on the scan and 0 on the baseline (segmenter, ``roi`` set).
    """

    forward: Callable[[Any], Any]
    x: Any  # the model input (a tensor in the model's axes)
    grid_map: np.ndarray  # the map on the model grid, in the model's axes
    base: Any  # the baseline on the same grid
    note: str  # the baseline, declared on the figures that use it
    index: int  # the explained class
    model_input: Any
    bands: Mapping[str, Band]
    settings: FigureSettings
    roi: RoiTarget | None = None
    batch_size: int = 4
    progress: Callable[[int, int], None] | None = None
    cancel: Any = None
    phases: int = 0
    done: int = 0
    figs: dict[str, Figure] = field(default_factory=dict)
    curves: dict[str, dict[str, list]] = field(default_factory=dict)

    def check(self) -> None:
        """Stop here when cancelled."""
        from ...explain.engine import Cancelled

        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("cancelled")

    def step(self) -> None:
        """One phase done: stop when cancelled, else report progress."""
        self.check()
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.phases)

    def judged(self, key: str, value: Any, note: str = "") -> Figure:
        return judged(key, value, self.bands, note, self.settings)

    def explain_target(self) -> dict[str, Any]:
        """The target as :func:`~napari_mlmi_interp.explain.explain` takes it, for the randomised models."""
        if self.roi is None:
            return {"target": self.index}
        return {"target": self.roi.class_index, "roi": self.roi.native, "roi_reduce": self.roi.reduce}
