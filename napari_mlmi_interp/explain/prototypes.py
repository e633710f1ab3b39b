""" "This looks like that": the prototypes behind a prototype network's decision.

For a ProtoPNet-style model (spec ``prototype: true``; the module has ``similarity_maps``
and ``last_layer``, as :class:`~napari_mlmi_interp.models.zoo_nets.ProtoNet3D`), each
prototype's evidence for a class is its similarity (the maximum over space of its
similarity map) times its weight in the last layer for that class (Chen et al., NeurIPS
2019). Similarity maps are upsampled trilinearly to the model grid, then mapped back to
the scan's native grid like any attribution.

:func:`prototype_thumbnail` draws a prototype's source patch (three orthogonal slices) with
the prototype's region outlined, as an RGB array: pure numpy, shown by the prototype panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..models.loading import LoadedModel
from ..models.predict import Prediction, predict, preprocessor_for
from ..models.preprocessing import ModelInput
from .targets import class_index

__all__ = [
    "THUMBNAIL_SIZE",
    "PrototypeMatch",
    "PrototypeReport",
    "load_prototype_metadata",
    "prototype_report",
    "prototype_thumbnail",
]

#: Default side of one slice of a prototype thumbnail, in screen pixels.
THUMBNAIL_SIZE = 96
#: Colour of the outline of a prototype's region (RGB).
OUTLINE_RGB = (255, 200, 0)


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
    regions : numpy.ndarray or None
        ``(3, h, w)`` booleans on the same slices: the prototype's region in its source patch
        (where the source scan is most similar to the prototype), when the metadata has it.
    lesion_fraction : float or None
        Fraction of the latent cell the prototype was pushed from that lies inside a lesion
        of its training scan, when the metadata records it.
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
    regions: np.ndarray | None = None
    lesion_fraction: float | None = None

    def thumbnail(self, size: int = THUMBNAIL_SIZE) -> np.ndarray | None:
        """The source patch with the region outlined (see :func:`prototype_thumbnail`)."""
        return None if self.patches is None else prototype_thumbnail(self.patches, self.regions, size=size)

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "class": self.class_name,
            "similarity": round(self.similarity, 5),
            "weight": round(self.weight, 5),
            "contribution": round(self.contribution, 5),
            "peak_lps_mm": [round(float(v), 2) for v in self.peak_lps],
            "source_case": self.source_case,
            "lesion_fraction": self.lesion_fraction,
        }


@dataclass
class PrototypeReport:
    """The top prototypes for one target class, strongest contribution first.

    ``classes`` are the model's classes (any of them can be the target of another report).
    """

    prediction: Prediction
    target_index: int
    target_name: str
    matches: list[PrototypeMatch]
    patch_axes: list[str]
    classes: list[str] = field(default_factory=list)


def load_prototype_metadata(model: LoadedModel) -> tuple[dict[str, Any], np.ndarray | None]:
    """The spec's prototype metadata (JSON) and its patch array, when the spec names them.

    When the patch file also holds ``regions`` (the prototypes' regions on the same slices),
    they are in ``meta["_regions"]`` as a boolean array.
    """
    path = model.spec.prototype_metadata
    if not path:
        return {"prototypes": []}, None
    meta = json.loads(Path(path).read_text())
    patches = None
    if meta.get("patches"):
        with np.load(Path(path).parent / meta["patches"]) as npz:
            patches = npz["patches"].astype(np.float32)
            if "regions" in npz.files:
                meta["_regions"] = npz["regions"].astype(bool)
    return meta, patches


def _resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (h, w) resampled to (size, size) by nearest neighbour (square pixels stay square)."""
    h, w = image.shape
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    return image[np.ix_(rows, cols)]


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its edge (4-connected; the image border counts)."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
    return mask & ~inner


def prototype_thumbnail(
    patches: np.ndarray,
    regions: np.ndarray | None = None,
    *,
    size: int = THUMBNAIL_SIZE,
    gap: int = 4,
    outline_width: int = 2,
) -> np.ndarray:
    """Three slices of a source patch side by side, the prototype's region outlined in colour.

    Parameters
    ----------
    patches : numpy.ndarray
        ``(3, h, w)``: axial (y, x), coronal (z, x) and sagittal (z, y) slices through the
        prototype's source patch (model grid, any intensity scale).
    regions : numpy.ndarray, optional
        ``(3, h, w)`` booleans on the same slices: the prototype's region. Without it, the
        two central pixels of each axis (the latent cell a prototype of a 1/2-resolution
        network was pushed from) are outlined.
    size : int
        Side of each slice in pixels (nearest-neighbour upsampling); at least 8.
    gap : int
        Dark pixels between the slices.
    outline_width : int
        Width of the outline in pixels.

    Returns
    -------
    numpy.ndarray
        ``(size, 3 * size + 2 * gap, 3)`` uint8 RGB. Coronal and sagittal slices are flipped
        so that superior is up; grey levels span the 1st to 99th percentile of all three.

    Examples
    --------
    >>> patches = np.zeros((3, 24, 24), np.float32)
    >>> prototype_thumbnail(patches).shape
    (96, 300, 3)
    """
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[0] != 3:
        raise InputError(f"patches must have shape (3, h, w), got {patches.shape}")
    if size < 8:
        raise InputError(f"size must be at least 8 pixels, got {size}")
    if regions is None:
        regions = np.zeros(patches.shape, bool)
        h, w = patches.shape[1:]
        regions[:, h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1] = True
    regions = np.asarray(regions, dtype=bool)
    if regions.shape != patches.shape:
        raise InputError(f"regions must have the patches' shape {patches.shape}, got {regions.shape}")
    views = [patches[0], patches[1][::-1], patches[2][::-1]]  # superior up
    masks = [regions[0], regions[1][::-1], regions[2][::-1]]
    lo, hi = np.percentile(np.concatenate([v.ravel() for v in views]), [1, 99])
    out = np.full((size, 3 * size + 2 * gap, 3), 32, np.uint8)
    for k, (view, mask) in enumerate(zip(views, masks, strict=True)):
        grey = np.clip((_resize_nearest(view, size) - lo) / max(hi - lo, 1e-6), 0, 1)
        tile = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
        tile[_outline(_resize_nearest(mask, size), outline_width)] = OUTLINE_RGB
        x0 = k * (size + gap)
        out[:, x0 : x0 + size] = tile
    return out


def _similarity_volume(
    volume: Volume, pre: Any, mi: ModelInput, model_map: np.ndarray, j: int
) -> tuple[Volume, np.ndarray]:
    """Prototype ``j``'s similarity map (model grid, model axes) on the scan's grid, and its LPS mm peak."""
    native = pre.inverse(model_map.astype(np.float32), mi)
    out = volume.with_array(native.astype(np.float32), name=f"{volume.name} · prototype {j} similarity")
    out.units = "similarity"
    return out, out.geometry.to_lps(np.unravel_index(int(np.argmax(native)), native.shape))


def _own_class(j: int, identity: Any, classes: list[str], info: dict[str, Any]) -> str:
    """The class prototype ``j`` belongs to: from the model's class identity, else from its metadata."""
    if identity is not None and int(identity[j].argmax()) < len(classes):
        return classes[int(identity[j].argmax())]
    return info.get("class", "")


def prototype_report(
    volume: Volume,
    model: LoadedModel,
    *,
    target: int | str | None = None,
    top: int = 5,
    model_input: ModelInput | None = None,
) -> PrototypeReport:
    """The ``top`` prototypes with the largest contribution to ``target`` (default: predicted).

    ``target`` is a class name or index: the report lists that class's evidence (similarity x
    the prototype's weight for that class), whatever the model predicted.

    Raises
    ------
    InputError
        If the model is not a prototype network.
    """
    import torch

    module = model.module
    if not (model.spec.prototype and hasattr(module, "similarity_maps") and hasattr(module, "last_layer")):
        raise InputError(
            f"model '{model.spec.name}' is not a prototype network (its spec needs 'prototype: true' and "
            "the module similarity_maps() and last_layer)"
        )
    pre = preprocessor_for(model)
    spec = (model.spec.input, model.spec.normalization)
    reusable = model_input is not None and model_input.made_from(volume, spec)
    mi = model_input if reusable else pre.forward(volume)
    prediction = predict(volume, model, model_input=mi)
    classes = model.spec.classes
    index = class_index(target, classes, default=prediction.predicted)
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
    regions = meta.get("_regions")
    by_index = {int(p["index"]): (k, p) for k, p in enumerate(meta.get("prototypes", []))}
    identity = getattr(module, "prototype_class_identity", None)
    matches = []
    for j in order:
        j = int(j)
        sim_volume, peak = _similarity_volume(volume, pre, mi, up[0, j].numpy(), j)
        k, info = by_index.get(j, (None, {}))
        matches.append(
            PrototypeMatch(
                index=j,
                class_name=_own_class(j, identity, classes, info),
                similarity=float(similarity[j]),
                weight=float(weights[j]),
                contribution=float(contribution[j]),
                similarity_map=sim_volume,
                peak_lps=np.asarray(peak),
                patches=None if patches is None or k is None else patches[k],
                source_case=str(info.get("source_case", "")),
                source_lps=tuple(info["lps_mm"]) if "lps_mm" in info else None,
                regions=None if regions is None or k is None else regions[k],
                lesion_fraction=info.get("lesion_fraction"),
            )
        )
    return PrototypeReport(
        prediction, index, classes[index], matches, list(meta.get("patch_axes", [])), list(classes)
    )
