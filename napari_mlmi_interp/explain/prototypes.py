""" "This looks like that": the prototypes behind a prototype network's decision.

For a ProtoPNet-style model (spec ``prototype: true``; the module has ``similarity_maps``
and ``last_layer``, as :class:`~napari_mlmi_interp.models.zoo_nets.ProtoNet3D`), each
prototype's evidence for a class is its similarity (the maximum over space of its
similarity map) times its weight in the last layer for that class (Chen et al., NeurIPS
2019). Similarity maps are upsampled trilinearly to the model grid, then mapped back to
the scan's native grid like any attribution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.volume import Volume
from ..models.loading import LoadedModel
from ..models.predict import Prediction, predict, preprocessor_for
from ..models.preprocessing import ModelInput
from .engine import _class_index

__all__ = ["PrototypeMatch", "PrototypeReport", "load_prototype_metadata", "prototype_report"]


@dataclass
class PrototypeMatch:
    """One prototype's part in a decision.

    Attributes
    ----------
    similarity_map : Volume
        Similarity of each place in the scan to the prototype, on the scan's grid.
    peak_lps : numpy.ndarray
        LPS mm of the most similar place (the similarity map's maximum).
    patches : numpy.ndarray or None
        ``(3, h, w)`` axial, coronal and sagittal slices through the prototype's source
        patch in its training scan (model grid, normalised intensities).
    """

    index: int
    class_name: str
    similarity: float
    weight: float
    contribution: float
    similarity_map: Volume
    peak_lps: np.ndarray
    patches: np.ndarray | None = None
    source_case: str = ""
    source_lps: tuple[float, float, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "class": self.class_name,
            "similarity": round(self.similarity, 5),
            "weight": round(self.weight, 5),
            "contribution": round(self.contribution, 5),
            "peak_lps_mm": [round(float(v), 2) for v in self.peak_lps],
            "source_case": self.source_case,
        }


@dataclass
class PrototypeReport:
    """The top prototypes for one target class, strongest contribution first."""

    prediction: Prediction
    target_index: int
    target_name: str
    matches: list[PrototypeMatch]
    patch_axes: list[str]


def load_prototype_metadata(model: LoadedModel) -> tuple[dict[str, Any], np.ndarray | None]:
    """The spec's prototype metadata (JSON) and its patch array, when the spec names them."""
    path = model.spec.prototype_metadata
    if not path:
        return {"prototypes": []}, None
    meta = json.loads(Path(path).read_text())
    patches = None
    if meta.get("patches"):
        with np.load(Path(path).parent / meta["patches"]) as npz:
            patches = npz["patches"].astype(np.float32)
    return meta, patches


def prototype_report(
    volume: Volume,
    model: LoadedModel,
    *,
    target: int | str | None = None,
    top: int = 5,
    model_input: ModelInput | None = None,
) -> PrototypeReport:
    """The ``top`` prototypes with the largest contribution to ``target`` (default: predicted).

    Raises
    ------
    ValueError
        If the model is not a prototype network.
    """
    import torch

    module = model.module
    if not (model.spec.prototype and hasattr(module, "similarity_maps") and hasattr(module, "last_layer")):
        raise ValueError(
            f"model '{model.spec.name}' is not a prototype network (its spec needs 'prototype: true' and "
            "the module similarity_maps() and last_layer)"
        )
    pre = preprocessor_for(model)
    reusable = model_input is not None and model_input.native is volume.geometry
    mi = model_input if reusable else pre.forward(volume)
    prediction = predict(volume, model, model_input=mi)
    classes = model.spec.classes
    index = _class_index(target, classes, default=prediction.predicted)
    x = mi.tensor()
    with torch.inference_mode():
        maps = module.similarity_maps(x)  # (1, P, d, h, w)
        up = torch.nn.functional.interpolate(
            maps, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False
        )
        weights = module.last_layer.weight[index].detach().numpy().astype(np.float64)
    similarity = maps.flatten(2).amax(dim=2)[0].numpy().astype(np.float64)
    contribution = similarity * weights
    order = np.argsort(-contribution)[: max(1, int(top))]
    meta, patches = load_prototype_metadata(model)
    by_index = {int(p["index"]): (k, p) for k, p in enumerate(meta.get("prototypes", []))}
    identity = getattr(module, "prototype_class_identity", None)
    matches = []
    for j in order:
        j = int(j)
        native = pre.inverse(up[0, j].numpy().astype(np.float32), mi)
        sim_volume = volume.with_array(
            native.astype(np.float32), name=f"{volume.name} · prototype {j} similarity"
        )
        sim_volume.units = "similarity"
        peak = sim_volume.geometry.to_lps(np.unravel_index(int(np.argmax(native)), native.shape))
        k, info = by_index.get(j, (None, {}))
        own = (
            classes[int(identity[j].argmax())]
            if identity is not None and int(identity[j].argmax()) < len(classes)
            else info.get("class", "")
        )
        matches.append(
            PrototypeMatch(
                index=j,
                class_name=own,
                similarity=float(similarity[j]),
                weight=float(weights[j]),
                contribution=float(contribution[j]),
                similarity_map=sim_volume,
                peak_lps=np.asarray(peak),
                patches=None if patches is None or k is None else patches[k],
                source_case=str(info.get("source_case", "")),
                source_lps=tuple(info["lps_mm"]) if "lps_mm" in info else None,
            )
        )
    return PrototypeReport(prediction, index, classes[index], matches, list(meta.get("patch_axes", [])))
