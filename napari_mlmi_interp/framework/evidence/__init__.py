"""Evidence per element: the metrics as figures with definitions and pass/warn/fail bands.

:func:`map_evidence` needs only a map (and optionally the true region, the scan and a label
map): localization, visual recognizability and physical attribution. It is cheap and runs
again whenever the reader redraws the true region. :func:`model_evidence` runs the model:
model transparency (deletion/insertion, cascading randomisation, infidelity) and
actionability (region removal, test-time augmentation). Every figure carries its definition
(hover text in the sidebar) and a band from :data:`DEFAULT_BANDS`, which a study can override.

The parameters behind the figures (k of the top-k % region, the pointing-game tolerance, the
faithfulness baseline) come from one
:class:`~napari_mlmi_interp.framework.settings.FigureSettings`, shown in the figures' labels
and notes and stored beside them. No two bands on one map contradict: the
figures that measure one thing share one threshold (:func:`linked_bands`).

One room per concept: :mod:`.bands` (thresholds), :mod:`.figures` (the catalogue, keyed by
the vocabulary's figure names, and one judged figure), :mod:`.assessment` (the figures of
one explanation), :mod:`.from_map` and :mod:`.from_model` (the two ways of computing them).
"""

from __future__ import annotations

from .assessment import Assessment
from .bands import DEFAULT_BANDS, Band, linked_bands, load_bands
from .figures import FIGURES, LOCALIZATION_FIGURES, Figure, FigureInfo, figure_label
from .from_map import map_evidence
from .from_model import model_evidence, score_function

__all__ = [
    "DEFAULT_BANDS",
    "FIGURES",
    "LOCALIZATION_FIGURES",
    "Assessment",
    "Band",
    "Figure",
    "FigureInfo",
    "figure_label",
    "linked_bands",
    "load_bands",
    "map_evidence",
    "model_evidence",
    "score_function",
]
