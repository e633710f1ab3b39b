"""Run a model on a volume: class probabilities, or a segmentation on the native grid."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.volume import Volume
from .domain import check_domain
from .loading import LoadedModel
from .preprocessing import ModelInput, Preprocessor
from .spec import ModelError

__all__ = [
    "Prediction",
    "classification_prediction",
    "model_failure",
    "model_foreground",
    "predict",
    "preprocessor_for",
    "segmentation_prediction",
]


@dataclass
class Prediction:
    """What a model said about a volume.

    For classification: ``probabilities`` (one per class), ``predicted`` index and
    ``label``. For segmentation: ``segmentation`` (a label Volume on the native grid) and
    ``volumes_ml`` per foreground class. ``warnings``: one sentence per way the scan lies
    outside the model's declared domain (:func:`~napari_mlmi_interp.models.domain.check_domain`).
    ``computed``: False when no prediction was made (an explanation given its class and mask
    whose method never ran the model on the unperturbed input); then nothing else is said.
    """

    model: str
    task: str
    classes: list[str]
    probabilities: np.ndarray | None = None
    predicted: int | None = None
    label: str | None = None
    segmentation: Volume | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    model_input: ModelInput | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    computed: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "task": self.task, "classes": list(self.classes)}
        if self.probabilities is not None:
            out["probabilities"] = {
                c: round(float(p), 6) for c, p in zip(self.classes, self.probabilities, strict=True)
            }
            out["predicted"] = self.label
        if self.task == "segmentation":
            volumes = {k: round(v, 4) for k, v in self.volumes_ml.items()}
            out["volumes_ml"] = volumes if self.computed else None
        if not self.computed:
            out["computed"] = False
        out["warnings"] = list(self.warnings)
        return out


def model_failure(model: LoadedModel, shape: tuple[int, ...], exc: BaseException) -> ModelError:
    """One readable sentence for a model that rejected its input.

    TorchScript wraps the real error in a multi-line interpreter trace ("The following
    operation failed in the TorchScript interpreter. ... RuntimeError: expected input ... to
    have 2 channels"): the last line of the message is the one a user needs.
    """
    spec = model.spec
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    detail = lines[-1] if lines else type(exc).__name__
    if lines and "TorchScript interpreter" in lines[0] and len(lines) > 1:
        detail = lines[-1]
    elif lines:
        detail = lines[0]
    return ModelError(
        f"model '{spec.name}' failed on an input of shape {shape} "
        f"(spec: {spec.input.channels} channel(s), size {spec.input.size or spec.input.patch_size}): "
        f"{type(exc).__name__}: {detail[:240]}"
    )


def preprocessor_for(model: LoadedModel) -> Preprocessor:
    return Preprocessor(model.spec.input, model.spec.normalization, foreground=model_foreground)


#: Pre-model masks by (scan digest, model sha256): a ``crop: {to: model}`` step is asked for
#: the same mask by every forward of an explanation; a 256³ mask is 16 MB, two are kept.
_FOREGROUND: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_FOREGROUND_KEEP = 2
#: Workers (the panel's, the sidebar's) share the cache: one computes a mask, the others wait.
_FOREGROUND_LOCK = threading.RLock()


def model_foreground(volume: Volume, name: str) -> np.ndarray:
    """Where the segmentation model ``name`` finds anything but background, on ``volume``'s grid.

    The crop step of brainchop's ``preModelId`` (e.g. a brain-extraction model run first):
    the model is resolved like ``--model NAME`` (a registered name or a spec file), run on
    the scan with its own preprocessing, and its labels mapped back to the scan's grid;
    returns a uint8 0/1 array (z, y, x). The model is held once (:func:`.held.held_models`);
    the mask is cached per scan content and model sha256 (weights rewritten in place give a
    new mask).
    """
    from .held import held_models
    from .preprocessing import source_digest

    model = held_models().resolve(name)
    key = (source_digest(volume), model.sha256)
    with _FOREGROUND_LOCK:
        if key in _FOREGROUND:
            _FOREGROUND.move_to_end(key)
            return _FOREGROUND[key]
        crop = model.spec.input.crop
        if model.spec.task != "segmentation" or (crop is not None and crop.to == "model"):
            raise ModelError(
                f"the crop model '{name}' must be a segmentation model that does not itself crop to a model"
            )
        segmentation = predict(volume, model).segmentation
        assert segmentation is not None  # a segmentation model's prediction
        mask = (segmentation.array > 0).astype(np.uint8)
        _FOREGROUND[key] = mask
        while len(_FOREGROUND) > _FOREGROUND_KEEP:
            _FOREGROUND.popitem(last=False)
        return mask


def _probabilities(logits: Any) -> np.ndarray:
    import torch

    flat = logits.reshape(logits.shape[0], -1)[0]
    if flat.numel() == 1:  # one logit: sigmoid -> [absent, present]
        p = torch.sigmoid(flat)[0].item()
        return np.array([1 - p, p])
    return torch.softmax(flat, dim=0).detach().numpy().astype(np.float64)


def classification_prediction(model: LoadedModel, logits: Any, model_input: ModelInput | None) -> Prediction:
    """A classification :class:`Prediction` from the model's logits for one sample.

    Used by :func:`predict`, and by :func:`~napari_mlmi_interp.explain.explain` to reuse the
    forward pass an attribution method makes on the unperturbed input.
    """
    spec = model.spec
    probs = _probabilities(logits)
    if probs.size != len(spec.classes):
        raise ModelError(f"model '{spec.name}' gave {probs.size} outputs for {len(spec.classes)} classes")
    out = Prediction(spec.name, spec.task, list(spec.classes), model_input=model_input)
    out.probabilities = probs
    out.predicted = int(np.argmax(probs))
    out.label = spec.classes[out.predicted]
    return out


def predict(volume: Volume, model: LoadedModel, *, model_input: ModelInput | None = None) -> Prediction:
    """Preprocess ``volume`` for ``model``, run it, and map the answer back.

    ``model_input`` reuses a preparation of the same volume by another model whose spec has
    the same ``input`` and ``normalization`` (checked), saving the resampling.

    The scan is compared with the spec's ``domain`` (when it has one); each mismatch is one
    sentence in ``Prediction.warnings``. Nothing is refused: the answer is given either way.

    Segmentation models with an input ``patch_size`` run as MONAI sliding windows
    (Gaussian-weighted, 25 % overlap) over the whole model grid.

    Raises
    ------
    ModelError
        When the model rejects the input (wrong channels, wrong size): the message says
        what it got and what the spec promised.
    """
    import torch

    spec = model.spec
    pre = preprocessor_for(model)
    if model_input is None or not model_input.made_from(volume, (spec.input, spec.normalization)):
        model_input = pre.forward(volume)
    x = model_input.tensor()
    try:
        with torch.inference_mode():
            if spec.task == "segmentation" and spec.input.patch_size is not None:
                from monai.inferers import sliding_window_inference

                roi = pre.to_model_axes(np.zeros(spec.input.patch_size, dtype=np.uint8)).shape
                logits = sliding_window_inference(x, roi, 1, model.module, overlap=0.25, mode="gaussian")
            else:
                logits = model(x)
    except Exception as exc:
        raise model_failure(model, tuple(x.shape), exc) from None
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if isinstance(logits, dict):
        logits = next(iter(logits.values()))
    if spec.task == "classification":
        out = classification_prediction(model, logits, model_input)
        out.warnings = check_domain(volume, spec)
        return out
    out = Prediction(spec.name, spec.task, list(spec.classes), model_input=model_input)
    out.warnings = check_domain(volume, spec)
    scores = logits[0].detach().numpy()
    if scores.shape[0] != len(spec.classes):
        raise ModelError(
            f"model '{spec.name}' gave {scores.shape[0]} channels for {len(spec.classes)} classes"
        )
    labels = (
        np.argmax(scores, axis=0).astype(np.uint8)
        if scores.shape[0] > 1
        else (scores[0] > 0).astype(np.uint8)
    )
    return segmentation_prediction(volume, model, labels, model_input, out)


def segmentation_prediction(
    volume: Volume, model: LoadedModel, labels: np.ndarray, model_input: ModelInput, out: Prediction
) -> Prediction:
    """``out`` given the segmentation from ``labels`` (model axes, on the model grid), on the native grid.

    Used by :func:`predict`, and by :func:`~napari_mlmi_interp.explain.explain` to reuse the
    forward pass an attribution method makes on the unperturbed input.
    """
    spec = model.spec
    native = preprocessor_for(model).inverse(labels, model_input, interpolation="nearest").astype(np.uint8)
    seg = volume.with_array(native, name=f"{volume.name} · {spec.name} segmentation")
    out.segmentation = seg
    voxel_ml = volume.geometry.voxel_volume_ml
    out.volumes_ml = {c: float((native == k).sum()) * voxel_ml for k, c in enumerate(spec.classes) if k > 0}
    return out
