"""One definition of the settings every figure depends on.

The sidebar, the Explain panel, ``mlmi-interp evaluate``, ``batch`` and the report all read
:data:`DEFAULT_SETTINGS`, so one map and one region give the same figures wherever a reader
sees them (a top-k Dice computed at 1 % in one panel and 5 % in another is two different
numbers under one name: 0.0324 and 0.0067 for the demo's Grad-CAM). The settings are stored beside the figures
(``Assessment.settings``, the ``settings`` block of every JSON output).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import InputError
from ..metrics.regions import DEFAULT_TOPK_PERCENT as _TOPK

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINE",
    "DEFAULT_BLUR_SIGMA_MM",
    "DEFAULT_SETTINGS",
    "DEFAULT_TOLERANCE_MM",
    "DEFAULT_TOPK_PERCENT",
    "FigureSettings",
    "baseline_text",
]

#: k of the top-k % region (contour layer, top-k Dice/IoU, score drop without the region,
#: DICOM SEG): 1.0, of all the map's voxels. On the 2 mm sample grid 1 % is about 10,700
#: voxels (85 mL), the strongest evidence; 5 % (430 mL) is half a brain. Defined in
#: ``metrics.regions`` so overlays and exports share it.
DEFAULT_TOPK_PERCENT = _TOPK

#: How far (mm) a map's peak may lie from the true region and still count as on it. The
#: pointing game uses it as its tolerance and the peak-to-region band passes at the same
#: distance, so the two localization figures never contradict each other.
DEFAULT_TOLERANCE_MM = 5.0

#: What removed voxels become in the deletion and insertion curves and the region-removal
#: score drop. A blurred copy of the scan keeps the local mean intensity and texture-free
#: anatomy, so the curve measures the model's use of the voxels, not its reaction to an
#: image it never saw (constant-filled holes are far from the training data).
DEFAULT_BASELINE = "blur"

#: Gaussian SD of the blurred baseline, in mm (3 voxels of the demo models' 3 mm grid).
DEFAULT_BLUR_SIGMA_MM = 9.0

#: The baselines a faithfulness curve can use.
BASELINES = ("blur", "mean", "min", "zero")


def baseline_text(baseline: Any, blur_sigma_mm: float = DEFAULT_BLUR_SIGMA_MM) -> str:
    """How a baseline reads on a card, e.g. ``"blurred scan (Gaussian σ = 9 mm)"``."""
    if isinstance(baseline, str):
        return {
            "blur": f"blurred scan (Gaussian σ = {blur_sigma_mm:g} mm)",
            "mean": "the scan's mean value (model input)",
            "min": "the scan's minimum (model input)",
            "zero": "zero (model input, after normalisation)",
        }.get(baseline, baseline)
    if isinstance(baseline, int | float):
        return f"constant {float(baseline):g} (model input)"
    return "a user-supplied array"


@dataclass(frozen=True)
class FigureSettings:
    """The parameters behind the figures: shown with them and stored beside them.

    Attributes
    ----------
    topk_percent : float
        k of the top-k % region: the k % of the map's voxels with the largest values
        (positive ones only; 0 < k <= 100).
    tolerance_mm : float
        Pointing-game tolerance and pass limit of the peak-to-region distance, in mm.
    baseline : str
        What removed voxels become in the deletion and insertion curves and the region
        removal: ``'blur'`` (default), ``'mean'``, ``'min'`` or ``'zero'`` (of the model input).
    blur_sigma_mm : float
        Gaussian SD of the ``'blur'`` baseline, in mm (converted to voxels of the model grid).
    """

    topk_percent: float = DEFAULT_TOPK_PERCENT
    tolerance_mm: float = DEFAULT_TOLERANCE_MM
    baseline: str = DEFAULT_BASELINE
    blur_sigma_mm: float = DEFAULT_BLUR_SIGMA_MM

    def __post_init__(self) -> None:
        if not 0.0 < float(self.topk_percent) <= 100.0:
            raise InputError(f"topk_percent must be in (0, 100], got {self.topk_percent}")
        if not float(self.tolerance_mm) >= 0.0:
            raise InputError(f"tolerance_mm must be >= 0, got {self.tolerance_mm}")
        if self.baseline not in BASELINES:
            raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if not float(self.blur_sigma_mm) > 0.0:
            raise InputError(f"blur_sigma_mm must be > 0, got {self.blur_sigma_mm}")

    def with_(self, **changes: Any) -> FigureSettings:
        """A copy with ``changes`` applied (``None`` values are ignored: "keep the setting")."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def baseline_text(self) -> str:
        """The baseline as the cards declare it."""
        return baseline_text(self.baseline, self.blur_sigma_mm)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_SETTINGS = FigureSettings()
