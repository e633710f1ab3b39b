"""What is explained: a class of a classifier, or a class's score inside a mask for a segmenter.

A segmentation question is "class T inside mask M"; its score is the sum (or mean) of T's
logits in M (DESIGN.md, second round), computed by a small module wrapping the model, so
every method explains it as it would a classifier's logit. The mask is given (a binary mask,
or one label of a label map), or it is the model's own segmentation of a class (``roi_label``;
one prediction). Class names are matched as a reader types them (:func:`match_class`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..models.loading import LoadedModel
from ..models.predict import Prediction
from ..models.preprocessing import ModelInput

__all__ = [
    "ResolvedTarget",
    "class_index",
    "kept_labels",
    "label_mask",
    "match_class",
    "native_mask",
    "reference_labels",
    "resolve_target",
    "roi_choices",
    "roi_request",
    "roi_score",
]


def _folded(name: str) -> str:
    """``name`` as compared: case-folded, letters and digits only ("Thalamus-Proper*" -> "thalamusproper")."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def match_class(name: str, classes: list[str], *, what: str = "target") -> int:
    """The index of the class called ``name``: exact, ignoring case and punctuation, or a unique prefix.

    Raises
    ------
    InputError
        No class matches, or a prefix matches several: the message lists the close names.
    """
    if name in classes:
        return classes.index(name)
    key = _folded(name)
    same = [i for i, c in enumerate(classes) if _folded(c) == key]
    if len(same) == 1:
        return same[0]
    starts = [i for i, c in enumerate(classes) if key and _folded(c).startswith(key)]
    if len(starts) == 1 and not same:
        return starts[0]
    contains = [i for i, c in enumerate(classes) if key and key in _folded(c)]
    close = difflib.get_close_matches(name, classes, n=5, cutoff=0.6)
    near = list(dict.fromkeys([*(classes[i] for i in same + starts + contains), *close]))
    if len(same) > 1 or len(starts) > 1:
        said = f"{what} {name!r} matches several classes ({', '.join(near)}): give the full name"
    elif near:
        said = f"{what} must be one of the classes, got {name!r}; close names: {', '.join(near)}"
    else:
        listed = ", ".join(classes[:20]) + (f", ... ({len(classes)} in all)" if len(classes) > 20 else "")
        said = f"{what} must be one of the classes ({listed}), got {name!r}"
    raise InputError(said)


def class_index(
    target: int | str | None, classes: list[str], *, default: int | None, what: str = "target"
) -> int:
    """The index of ``target`` (a class name or index) among ``classes``; ``default`` when None.

    Names are matched by :func:`match_class` (case-insensitive; a unique prefix will do).
    """
    if target is None:
        if default is None:
            raise InputError(f"a {what} class is needed")
        return int(default)
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        return match_class(target, classes, what=what)
    index = int(target)
    if not 0 <= index < len(classes):
        raise InputError(f"{what} index must be in 0..{len(classes) - 1}, got {index}")
    return index


def native_mask(mask: np.ndarray | Volume, volume: Volume, what: str) -> np.ndarray:
    """A mask on the scan's grid as an array; :class:`InputError` when its shape is not the scan's."""
    array = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if array.shape != volume.shape:
        raise InputError(f"{what} shape {array.shape} does not match the scan {volume.shape}")
    return array


def label_mask(
    labels: np.ndarray, label: int | str | None, classes: list[str], *, what: str = "ROI"
) -> np.ndarray:
    """The voxels of one label of a label map, as booleans.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map whose values index ``classes`` (a model's own segmentation, saved
        or shown as a Labels layer).
    label : int or str or None
        A class name (matched by :func:`match_class`) or a label value; None: every labelled
        (non-zero) voxel.
    classes : list of str
        The model's classes.

    Raises
    ------
    InputError
        An unknown name, or a label that no voxel holds.
    """
    labels = np.asarray(labels)
    if label is None:
        mask, said = labels != 0, "any label"
    else:
        if isinstance(label, str) and not label.strip().isdigit():
            value = match_class(label, classes, what=f"{what} label")
        else:
            value = int(label)
        mask = labels == value
        said = f"label {value}" + (f" ({classes[value]})" if 0 <= value < len(classes) else "")
    if not mask.any():
        raise InputError(f"the {what} is empty: no voxel of the label map holds {said}")
    return mask


#: The panel's default ROI: the model's own segmentation of the target class.
MODEL_ROI = "model's segmentation of the target"


def roi_choices(classes: list[str], label_layers: list[str]) -> list[tuple[str, str | None]]:
    """The ROIs a panel offers a segmenter, as ``(text, choice)``; ``choice`` goes to :func:`roi_request`.

    The model's own segmentation of the target (None), a Labels layer (``"layer:<name>"``),
    or the model's own segmentation of another class (``"class:<name>"``); plain strings, as
    Qt keeps item data.
    """
    out: list[tuple[str, str | None]] = [(MODEL_ROI, None)]
    out += [(f"ROI: {name}", f"layer:{name}") for name in label_layers]
    out += [(f"model's segmentation of {c}", f"class:{c}") for c in classes[1:]]
    return out


def roi_request(choice: str | None, label: str, classes: list[str], labels_of: Any) -> dict[str, Any]:
    """The :func:`~napari_mlmi_interp.explain.explain` keywords (``roi`` or ``roi_label``) for a choice.

    Parameters
    ----------
    choice : str or None
        From :func:`roi_choices`.
    label : str
        For a Labels layer: a class name or a label value (its voxels are the ROI); empty:
        every labelled voxel.
    labels_of : callable
        ``labels_of(layer name) -> array`` on the scan's grid.
    """
    if choice is None:
        return {}
    kind, _, name = choice.partition(":")
    if kind == "class":
        return {"roi_label": name}
    return {"roi": label_mask(labels_of(name), label.strip() or None, classes)}


def roi_score(module: Any, mask: np.ndarray, class_index: int, reduce: str) -> Any:
    """Segmentation target: a module scoring the sum (or mean) of one class's logits in a mask."""
    import torch

    # (1, 1, *spatial): rank 5 like the input, so a channels-last copy (:mod:`.tuning`) can be made
    weight = torch.from_numpy(mask.astype(np.float32))[None, None]
    if reduce == "mean":
        weight = weight / max(1.0, float(weight.sum()))

    class RoiScore(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.register_buffer("weight", weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.inner(x)
            return (
                (logits[:, class_index : class_index + 1] * self.weight).flatten(1).sum(dim=1, keepdim=True)
            )

    return RoiScore()


def reference_labels(module: Any, reference: Any, n_classes: int) -> Any:
    """``module``, keeping the segmentation of the first one-sample input equal to ``reference``.

    Numerically identical to ``module``. The segmentation (``labels``: argmax over channels, or
    logit > 0 for one channel, ``uint8`` in model axes) is the one :func:`predict` makes from
    the same logits, so an attribution method's own pass on the unperturbed input gives the
    prediction for free; ``labels`` stays None when no such pass happens.
    """
    import torch

    class ReferenceLabels(torch.nn.Module):
        keeps_reference_labels = True

        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.labels: np.ndarray | None = None
            # a buffer: a copy of the model on a GPU (:mod:`.device`) compares on its device
            self.register_buffer("reference", reference, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if (
                self.labels is None
                and isinstance(out, torch.Tensor)
                and out.ndim >= 2
                and out.shape[:2] == (1, n_classes)
                and x.shape == self.reference.shape
                and torch.equal(x.detach(), self.reference)
            ):
                with torch.no_grad():
                    scores = out[0].detach()
                    labels = scores.argmax(dim=0) if scores.shape[0] > 1 else scores[0] > 0
                self.labels = labels.to(torch.uint8).cpu().numpy()
            return out

    return ReferenceLabels()


def kept_labels(module: Any) -> np.ndarray | None:
    """The segmentation a :func:`reference_labels` wrapper inside ``module`` kept, or None."""
    for m in module.modules():
        if getattr(m, "keeps_reference_labels", False):
            return m.labels
    return None


@dataclass
class ResolvedTarget:
    """The target as recorded (``info``), the module whose output is attributed, and its index.

    ``roi``: a segmentation target's mask on the scan's grid (boolean), None for a class.
    """

    info: dict[str, Any]
    scored: Any
    index: int
    roi: np.ndarray | None = None


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
    roi_label: int | str | None = None,
) -> ResolvedTarget:
    """The class (classification) or the class's score in the ROI on the model grid (segmentation).

    ``prediction`` gives the default class (classification) or the ROI when none is given
    (segmentation): the model's own segmentation of ``roi_label``, else of the target class;
    ``roi_label`` is also the default target. It may be None for a classifier with a given
    ``target`` and a segmenter with a given ``roi``; then the segmenter (run whole, not by
    patches) is wrapped in :func:`reference_labels` so the run's own pass yields the prediction.
    """
    spec, module = model.spec, model.module
    if spec.task == "classification":
        default = None if prediction is None else prediction.predicted
        index = class_index(target, spec.classes, default=default)
        return ResolvedTarget({"kind": "class", "index": index, "name": spec.classes[index]}, module, index)
    label = None if roi_label is None else class_index(roi_label, spec.classes, default=None, what="ROI")
    default = label if label is not None else (1 if len(spec.classes) > 1 else 0)
    index = class_index(target, spec.classes, default=default)
    if roi is None:
        label = index if label is None else label
        mask = (prediction.segmentation.array == label).astype(np.uint8)
        source = "model prediction" if label == index else f"model prediction of {spec.classes[label]}"
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
    if roi is None and label != index:
        info["roi_class"] = spec.classes[label]
    if prediction is None and spec.input.patch_size is None:
        module = reference_labels(module, mi.tensor(), len(spec.classes))
    return ResolvedTarget(info, roi_score(module, grid_mask, index, roi_reduce), 0, mask > 0)
