"""Pass/warn/fail bands: the thresholds a figure is judged by, and how a study overrides them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ..settings import DEFAULT_SETTINGS, FigureSettings
from .figures import FIGURES

__all__ = ["DEFAULT_BANDS", "Band", "linked_bands", "load_bands"]


@dataclass(frozen=True)
class Band:
    """Thresholds for one figure: ``pass`` at or beyond ``pass_at``, ``warn`` at or beyond ``warn_at``."""

    higher_is_better: bool
    pass_at: float
    warn_at: float

    def judge(self, value: float | None) -> str:
        if value is None or not np.isfinite(value):
            return "n/a"
        v = float(value)
        if self.higher_is_better:
            return "pass" if v >= self.pass_at else "warn" if v >= self.warn_at else "fail"
        return "pass" if v <= self.pass_at else "warn" if v <= self.warn_at else "fail"

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"pass {op} {self.pass_at:g}, warn {op} {self.warn_at:g}"


#: Default bands. Localization thresholds assume a focal finding; the recognizability ones
#: were set on the demo zoo (a class-map Grad-CAM on a lesion: 1 component, Gini 0.97; an
#: IG map: Gini 0.8, scattered) and are meant to be tuned per study (:func:`load_bands`).
DEFAULT_BANDS: dict[str, Band] = {
    "pointing_game": Band(True, 1.0, 1.0),
    "peak_to_roi_mm": Band(False, 5.0, 15.0),
    "relevance_mass_accuracy": Band(True, 0.3, 0.1),
    "relevance_rank_accuracy": Band(True, 0.3, 0.1),
    "auroc": Band(True, 0.9, 0.75),
    "topk_dice": Band(True, 0.3, 0.1),
    "topk_iou": Band(True, 0.2, 0.05),
    "components_90": Band(False, 3.0, 10.0),
    "gini": Band(True, 0.8, 0.6),
    "entropy": Band(False, 0.85, 0.95),
    "deletion_auc": Band(False, 0.3, 0.5),
    "insertion_auc": Band(True, 0.7, 0.5),
    "randomisation_final_rho": Band(False, 0.3, 0.6),
    "prediction_drop": Band(True, 0.3, 0.1),
    "tta_sd": Band(False, 0.05, 0.15),
    # a segmenter's spread: of the volume a reader would report, 0.1 mL (100 voxels of 1 mm,
    # 2.5 % of a 4 mL hippocampus) passes and 0.5 mL (12 %) warns; the scale-free companion is
    # the Dice spread, within 0.02 of one copy to the next. A whole-organ mask (a 1.6 L brain)
    # needs a study's own band (load_bands)
    "tta_volume_sd_ml": Band(False, 0.1, 0.5),
    "tta_dice_sd": Band(False, 0.02, 0.05),
}


def load_bands(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Band]:
    """:data:`DEFAULT_BANDS` updated from a JSON file or mapping ``{key: {"pass": x, "warn": y}}``.

    ``"higher_is_better"`` may be given too; unknown keys are an error (a typo would
    otherwise be silently ignored).

    Bands that follow another setting cannot be set here, so that no two bands on one map
    contradict (see :func:`linked_bands`): ``pointing_game`` (hit or miss), the ``pass`` of
    ``peak_to_roi_mm`` (it is the tolerance: set ``tolerance_mm`` instead) and ``topk_iou``
    (it follows ``topk_dice``).

    Raises
    ------
    InputError
        For an unknown figure or a band that cannot be set (a ``ValueError`` too).
    """
    bands = dict(DEFAULT_BANDS)
    if source is None:
        return bands
    where = "bands" if isinstance(source, Mapping) else str(source)
    data = source if isinstance(source, Mapping) else _read_json(Path(source))
    if not isinstance(data, Mapping):
        raise InputError(
            f"{where}: bands must be a JSON object {{figure: {{pass, warn}}}}, got {type(data).__name__}"
        )
    for key, spec in data.items():
        if not isinstance(spec, Mapping):
            raise InputError(f"{where}: the band for {key!r} must be an object {{pass, warn}}, got {spec!r}")
        _check_settable(key, spec)
        old = bands.get(key, Band(True, 0.0, 0.0))
        try:
            bands[key] = Band(
                bool(spec.get("higher_is_better", old.higher_is_better)),
                float(spec.get("pass", old.pass_at)),
                float(spec.get("warn", old.warn_at)),
            )
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: the pass and warn limits of {key!r} must be numbers, got {dict(spec)}"
            ) from None
    return bands


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; a file that is not JSON is an :class:`InputError` naming it."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _check_settable(key: str, spec: Mapping[str, Any]) -> None:
    """Refuse a band for an unknown figure, or one that follows another setting."""
    if key not in FIGURES:
        raise InputError(f"no figure called {key!r}; figures: {', '.join(FIGURES)}")
    if key == "pointing_game":
        raise InputError(
            "the pointing_game band cannot be set (a hit passes, a miss fails); "
            "its tolerance is tolerance_mm (--tolerance-mm)"
        )
    if key == "peak_to_roi_mm" and "pass" in spec:
        raise InputError(
            "the pass limit of peak_to_roi_mm is the pointing-game tolerance: set tolerance_mm "
            f"(--tolerance-mm) instead of 'pass', got pass = {spec['pass']}"
        )
    if key == "topk_iou":
        raise InputError(
            "the topk_iou band follows topk_dice's (IoU = Dice / (2 - Dice)): set topk_dice instead"
        )


def linked_bands(
    bands: Mapping[str, Band] | None = None, settings: FigureSettings = DEFAULT_SETTINGS
) -> dict[str, Band]:
    """``bands`` with the linked pairs made to agree, so no two bands on one map contradict.

    - ``pointing_game`` and ``peak_to_roi_mm``: both judge the distance from the map's peak
      to the true region against ``settings.tolerance_mm``: the pointing game hits, and the
      distance passes, exactly when it is <= the tolerance (the distance's warn limit stays
      its own, at least the tolerance).
    - ``topk_dice`` and ``topk_iou``: one overlap, two scales (IoU = Dice / (2 - Dice)); the
      IoU band is the Dice band carried over, so the two always share a band.
    """
    out = dict(bands or DEFAULT_BANDS)
    tol = float(settings.tolerance_mm)
    out["pointing_game"] = Band(True, 1.0, 1.0)
    peak = out.get("peak_to_roi_mm", DEFAULT_BANDS["peak_to_roi_mm"])
    out["peak_to_roi_mm"] = Band(False, tol, max(float(peak.warn_at), tol))
    dice = out.get("topk_dice", DEFAULT_BANDS["topk_dice"])
    out["topk_iou"] = Band(True, dice.pass_at / (2 - dice.pass_at), dice.warn_at / (2 - dice.warn_at))
    return out
