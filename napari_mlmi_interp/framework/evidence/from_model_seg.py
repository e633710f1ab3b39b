"""Model evidence for a segmentation target: class T inside an ROI M (DESIGN.md, second round).

The target's score is the sum (or mean) of T's logits in M, as the explanation explained it
(:func:`~napari_mlmi_interp.explain.targets.roi_score`). The faithfulness figures use it
*scaled*: 1 on the scan, 0 on the baseline (the scan with every voxel replaced by the
declared baseline), so a deletion AUC, an insertion AUC and a score drop read on the same
0-1 scale, with the same bands, as a classifier's probability. Test-time augmentation
measures what a segmenter's reader cares about: the spread of T's segmented volume (mL) and
of its Dice with the scan's own segmentation, and of T's mean probability in M.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import metrics as M
from ...errors import InputError
from .figures import Figure
from .probe import Probe, RoiTarget

__all__ = [
    "AUGMENTATION_OPTIONS",
    "augmentation_options",
    "logits_function",
    "roi_score_function",
    "roi_target",
    "scaled",
    "segmentation_spread",
]

#: What a caller may set of the test-time augmentations
#: (:func:`~napari_mlmi_interp.metrics.augmented_copies`).
AUGMENTATION_OPTIONS = ("shift_voxels", "intensity", "noise", "seed")


def logits_function(model: Any) -> Callable[[Any], Any]:
    """``batch -> (N, K, *spatial)`` logits of a segmenter (the first output of a tuple or dict)."""
    module = model.module

    def logits(x: Any) -> Any:
        out = module(x)
        if isinstance(out, tuple | list):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return out

    return logits


def roi_score_function(
    logits: Callable[[Any], Any], mask: np.ndarray, class_index: int, reduce: str
) -> Callable[[Any], Any]:
    """``batch -> (N,)``: the sum (``reduce='sum'``) or mean of class ``class_index``'s logits in ``mask``.

    ``mask`` is boolean on the model grid, in the model's axis order.
    """
    import torch

    weight = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
    if reduce == "mean":
        weight = weight / max(1.0, float(weight.sum()))
    elif reduce != "sum":
        raise InputError(f"roi_reduce must be 'sum' or 'mean', got {reduce!r}")

    def score(x: Any) -> Any:
        return (logits(x)[:, class_index] * weight).flatten(1).sum(dim=1)

    return score


def scaled(raw: Callable[[Any], Any], at_input: float, at_baseline: float) -> Callable[[Any], Any]:
    """``raw`` scaled to 1 at the input and 0 at the baseline."""
    span = at_input - at_baseline

    def score(x: Any) -> Any:
        return (raw(x) - at_baseline) / span

    return score


def _native_roi(explanation: Any, roi: Any) -> np.ndarray | str:
    """The explanation's ROI on the scan's grid, or why it is not known."""
    shape = tuple(explanation.native.shape)
    if roi is not None:
        array = np.asarray(getattr(roi, "array", roi))
        if array.shape != shape:
            raise InputError(f"roi shape {array.shape} does not match the scan {shape}")
        return array > 0
    stored = getattr(explanation, "roi", None)
    if stored is not None:
        return np.asarray(stored) > 0
    # an explanation made before maps kept their ROI: the model's own segmentation of the class
    seg, target = getattr(explanation.prediction, "segmentation", None), explanation.target
    classes = list(getattr(explanation.prediction, "classes", []))
    label = target.get("roi_class", target.get("name"))
    if str(target.get("roi", "")).startswith("model prediction") and seg is not None and label in classes:
        return np.asarray(seg.array) == classes.index(label)
    return "the ROI this map was explained in is not known: pass it (roi=MASK on the scan's grid)"


def roi_target(
    explanation: Any, model: Any, pre: Any, mi: Any, x: Any, base: Any, roi: Any = None
) -> RoiTarget | str:
    """The segmentation target on the model grid with its scores at the scan and the baseline.

    Returns the reason instead when the figures cannot be computed: the ROI is unknown, is
    not the one explained, or the baseline leaves its score unchanged.
    """
    import torch

    native = _native_roi(explanation, roi)
    if isinstance(native, str):
        return native
    on_grid = pre.forward_mask(native.astype(np.uint8), explanation.native.geometry, mi.grid)
    mask = np.asarray(pre.to_model_axes(on_grid)) > 0
    explained = explanation.target.get("roi_voxels")
    if explained is not None and int(mask.sum()) != int(explained):
        return (
            f"the ROI given has {int(mask.sum())} voxels on the model grid, "
            f"the one explained {int(explained)}: not the same question"
        )
    if not mask.any():
        return "the ROI is empty on the model grid"
    index, reduce = int(explanation.target["class_index"]), str(explanation.target.get("reduce", "sum"))
    logits = logits_function(model)
    with torch.no_grad():
        raw = roi_score_function(logits, mask, index, reduce)
        at_input, at_baseline = float(raw(x)[0]), float(raw(base)[0])  # one at a time: 256³ is large
    if not abs(at_input - at_baseline) > 1e-9 * max(1.0, abs(at_input), abs(at_baseline)):
        return f"the baseline leaves the ROI score unchanged ({at_input:.4g}): nothing to scale it by"
    voxel_ml = float(np.prod(mi.grid.spacing)) / 1000.0
    return RoiTarget(index, mask, native, reduce, logits, at_input, at_baseline, voxel_ml)


def augmentation_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The test-time augmentation settings a caller gave, checked (unknown names are an error)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(AUGMENTATION_OPTIONS))
    if unknown:
        raise InputError(
            f"unknown augmentation option(s) {', '.join(unknown)}; options: {', '.join(AUGMENTATION_OPTIONS)}"
        )
    return options


def segmentation_spread(probe: Probe, roi: RoiTarget, tta: int, options: Mapping[str, Any]) -> None:
    """Confidence (mean probability of T in M) and the spread of it, of T's volume and Dice under TTA."""
    spread = M.tta_segmentation(
        roi.logits, probe.x, roi.class_index, voxel_ml=roi.voxel_ml, roi=roi.mask, n=tta, **options
    )
    probe.figs["confidence"] = Figure("confidence", spread.roi_probability[0])
    probe.figs["tta_sd"] = probe.judged("tta_sd", spread.sd(spread.roi_probability))
    probe.figs["tta_volume_sd_ml"] = probe.judged("tta_volume_sd_ml", spread.sd(spread.volumes_ml))
    probe.figs["tta_dice_sd"] = probe.judged("tta_dice_sd", spread.sd(spread.dice))
    copies = list(range(len(spread.volumes_ml)))
    probe.curves["tta"] = {"x": copies, "y": spread.roi_probability}
    probe.curves["tta_volume_ml"] = {"x": copies, "y": spread.volumes_ml}
    probe.curves["tta_dice"] = {"x": copies, "y": spread.dice}
    probe.step()
