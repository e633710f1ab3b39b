"""What is explained: a class of a classifier, or a class's score inside a mask for a segmenter.

A segmentation question is "class T inside mask M"; its score is the sum (or mean) of T's
logits in M (DESIGN.md, second round), computed by a small module wrapping the model, so
every method explains it as it would a classifier's logit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..models.loading import LoadedModel
from ..models.predict import Prediction
from ..models.preprocessing import ModelInput

__all__ = ["ResolvedTarget", "class_index", "native_mask", "resolve_target", "roi_score"]


def class_index(target: int | str | None, classes: list[str], *, default: int | None) -> int:
    """The index of ``target`` (a class name or index) among ``classes``; ``default`` when None."""
    if target is None:
        if default is None:
            raise InputError("a target class is needed")
        return int(default)
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            raise InputError(f"target must be one of the classes {classes}, got {target!r}")
        return classes.index(target)
    index = int(target)
    if not 0 <= index < len(classes):
        raise InputError(f"target index must be in 0..{len(classes) - 1}, got {index}")
    return index


def native_mask(mask: np.ndarray | Volume, volume: Volume, what: str) -> np.ndarray:
    """A mask on the scan's grid as an array; :class:`InputError` when its shape is not the scan's."""
    array = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if array.shape != volume.shape:
        raise InputError(f"{what} shape {array.shape} does not match the scan {volume.shape}")
    return array


def roi_score(module: Any, mask: np.ndarray, class_index: int, reduce: str) -> Any:
    """Segmentation target: a module scoring the sum (or mean) of one class's logits in a mask."""
    import torch

    weight = torch.from_numpy(mask.astype(np.float32))[None]
    if reduce == "mean":
        weight = weight / max(1.0, float(weight.sum()))

    class RoiScore(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.register_buffer("weight", weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.inner(x)
            return (logits[:, class_index] * self.weight).flatten(1).sum(dim=1, keepdim=True)

    return RoiScore()


@dataclass
class ResolvedTarget:
    """The target as recorded (``info``), the module whose output is attributed, and its index."""

    info: dict[str, Any]
    scored: Any
    index: int


def resolve_target(
    volume: Volume,
    model: LoadedModel,
    mi: ModelInput,
    pre: Any,
    target: int | str | None,
    *,
    roi: np.ndarray | Volume | None,
    roi_reduce: str,
    prediction: Prediction | None,
) -> ResolvedTarget:
    """The class (classification) or the class's score in the ROI on the model grid (segmentation).

    ``prediction`` gives the default class (classification) or the default ROI, the model's
    own segmentation of the target class (segmentation); it may be None for a classifier
    with a given ``target``.
    """
    spec, module = model.spec, model.module
    if spec.task == "classification":
        default = None if prediction is None else prediction.predicted
        index = class_index(target, spec.classes, default=default)
        return ResolvedTarget({"kind": "class", "index": index, "name": spec.classes[index]}, module, index)
    index = class_index(target, spec.classes, default=1 if len(spec.classes) > 1 else 0)
    if roi is None:
        mask, source = (prediction.segmentation.array == index).astype(np.uint8), "model prediction"
    else:
        mask, source = native_mask(roi, volume, "roi"), "given mask"
    grid_mask = pre.to_model_axes(pre.forward_mask((mask > 0).astype(np.uint8), volume.geometry, mi.grid))
    if not grid_mask.any():
        raise InputError(f"the ROI ({source}) is empty on the model grid: nothing to explain")
    info = {
        "kind": "roi",
        "class_index": index,
        "name": spec.classes[index],
        "roi": source,
        "reduce": roi_reduce,
        "roi_voxels": int(grid_mask.sum()),
    }
    return ResolvedTarget(info, roi_score(module, grid_mask, index, roi_reduce), 0)
