"""Volumes as napari layers, placed in patient LPS millimetres.

napari's world coordinates *are* LPS mm, in the order (L, P, S), for any orientation,
oblique series included: a layer's ``affine`` is the ``index_to_lps`` of the volume as
displayed. napari can only slice a layer along data axes that map to the same-numbered
world axes, so the layer holds the array under an exact axis permutation (a numpy view,
no copy, no resampling) that puts each data axis next to its nearest LPS axis: identity
for a sagittal stack, ``(x, y, z)`` for an axial one. ``metadata["axes"]`` records it and
:func:`layer_volume` undoes it.
:func:`set_radiological_view` then arranges the viewer the way radiologists read:
axial slices with anterior up and the patient's left on the viewer's right, coronal and
sagittal with the head up.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io.volume import Geometry, Volume

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "LPS_AXIS_LABELS",
    "contrast_limits",
    "geometry_from_layer_state",
    "is_label_map",
    "layer_volume",
    "set_radiological_view",
    "viewer_camera",
    "volume_layer_data",
    "volume_of_layer",
]

#: napari world axes when layers carry ``index_to_lps``.
LPS_AXIS_LABELS = ("L", "P", "S")

# world axis shown as (slider, vertical, horizontal) and the vertical axis's direction
_PLANES = {
    "axial": ((2, 1, 0), "down"),  # slider S; P downwards (anterior up); L to the right
    "coronal": ((1, 2, 0), "up"),  # slider P; S upwards; L to the right
    "sagittal": ((0, 2, 1), "up"),  # slider L; S upwards; P to the right (anterior left)
}

_LABEL_NAME = re.compile(r"(mask|label|seg|roi|lesion)", re.IGNORECASE)


def contrast_limits(volume: Volume) -> tuple[float, float]:
    """Window from the source (centre, width) when present, else robust percentiles.

    The percentiles (0.5 and 99.5) are taken over the voxels above the background
    value when background fills much of the field of view (MR, templates), so that
    tissue, not air, sets the contrast.
    """
    if volume.window is not None:
        c, w = volume.window
        if w > 0:
            return (float(c - w / 2), float(c + w / 2))
    a = volume.array
    sample = a[:: max(1, a.shape[0] // 32)] if a.size > 4_000_000 else a
    floor = np.percentile(sample, 5)
    foreground = sample[sample > floor]
    if volume.modality != "CT" and foreground.size > 0.05 * sample.size:
        sample = foreground
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
        hi = hi if hi > lo else lo + 1.0
    return (float(lo), float(hi))


def is_label_map(volume: Volume) -> bool:
    """Integer volume named like a mask/segmentation with few distinct values."""
    a = volume.array
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        return False
    if not _LABEL_NAME.search(volume.name):
        return False
    return a.min() >= 0 and np.unique(a[:: max(1, a.shape[0] // 16)]).size <= 256


def volume_layer_data(volume: Volume, *, layer_type: str | None = None, **kwargs: Any) -> tuple:
    """A napari LayerData tuple ``(data, kwargs, layer_type)`` for ``volume``.

    The layer's data is the volume's array under :meth:`Geometry.nearest_lps_permutation`
    and its affine that view's ``index_to_lps`` (world = LPS mm); units are mm;
    ``metadata["volume"]`` is the Volume and ``metadata["axes"]`` the permutation.
    Images get contrast limits from the source window or robust percentiles; label maps
    become Labels layers.
    """
    layer_type = layer_type or ("labels" if is_label_map(volume) else "image")
    axes = volume.geometry.nearest_lps_permutation()
    shown = volume.transposed(axes)
    meta = {"volume": volume, "axes": axes, "case_id": volume.case_id, "modality": volume.modality}
    attrs: dict[str, Any] = {
        "name": volume.name,
        "affine": shown.index_to_lps,
        "units": "mm",
        "axis_labels": LPS_AXIS_LABELS,
        "metadata": meta,
    }
    if layer_type == "image":
        attrs.update(contrast_limits=contrast_limits(volume), colormap="gray", interpolation2d="linear")
        if "MONOCHROME1" in str(volume.metadata.get("PhotometricInterpretation", "")):
            attrs["colormap"] = "gray_r"
    elif layer_type == "labels":
        attrs.update(opacity=0.5)
    attrs.update(kwargs)
    data = shown.array
    if layer_type == "labels" and not np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.uint8)
    return (data, attrs, layer_type)


def geometry_from_layer_state(data: Any, meta: dict[str, Any]) -> Geometry:
    """Recover a Geometry from a layer's data and state (``layer._get_state()`` / writer meta).

    Composes the layer's affine with its scale/translate/rotate/shear, i.e. its full
    data-to-world transform; world is taken as LPS mm.

    Raises
    ------
    ValueError
        If the layer is not 3D or its transform contains shear.
    """
    from napari.utils.transforms import Affine

    ndim = np.ndim(data)
    if ndim != 3:
        raise ValueError(f"only 3D layers can be saved as volumes, got {ndim}D data")
    physical = Affine(
        scale=meta.get("scale"),
        translate=meta.get("translate"),
        rotate=meta.get("rotate"),
        shear=meta.get("shear"),
        ndim=3,
    ).affine_matrix
    affine = meta.get("affine")
    affine = np.eye(4) if affine is None else np.asarray(getattr(affine, "affine_matrix", affine))
    return Geometry.from_index_to_lps(affine @ physical, tuple(np.shape(data)))


def layer_volume(data: Any, meta: dict[str, Any], *, name: str | None = None) -> Volume:
    """The Volume a layer shows, back in the source array order when the layer has one.

    Uses the layer's full data-to-world transform (world = LPS mm), so edits to the
    layer's data (painted labels) and to its transform are kept.
    """
    geometry = geometry_from_layer_state(data, meta)
    array = np.asarray(data)
    source = (meta.get("metadata") or {}).get("volume")
    axes = (meta.get("metadata") or {}).get("axes")
    volume = Volume(
        array=array,
        geometry=geometry,
        name=name or str(meta.get("name", "layer")),
        modality=getattr(source, "modality", "OT"),
        case_id=getattr(source, "case_id", ""),
    )
    if axes is not None and sorted(axes) == [0, 1, 2]:
        inverse = tuple(int(i) for i in np.argsort(axes))
        volume = volume.transposed(inverse)
        volume.array = np.ascontiguousarray(volume.array)
    return volume


def set_radiological_view(viewer: napari.Viewer, plane: str = "axial") -> None:
    """Show LPS-world layers as a radiologist reads them.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer whose layers carry LPS affines (3 world dimensions).
    plane : {"axial", "coronal", "sagittal"}
        Axial: anterior up, patient's left on the viewer's right (radiological
        convention); coronal and sagittal: head up.
    """
    if plane not in _PLANES:
        raise ValueError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    if viewer.dims.ndim != 3:
        return
    order, vertical = _PLANES[plane]
    viewer.dims.order = order
    viewer.dims.axis_labels = LPS_AXIS_LABELS
    viewer_camera(viewer).orientation2d = (vertical, "right")
    viewer.reset_view()


def viewer_camera(viewer: napari.Viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def volume_of_layer(layer: Any) -> Volume:
    """The Volume an image or labels layer shows, in LPS mm.

    When the layer still lies where the Volume it was made from (``metadata["volume"]``)
    lies (same data shape and world transform), that Volume's geometry and facts with the
    layer's *current* data (a painted Labels layer, or data replaced since); else one
    rebuilt from the layer's data and full data-to-world transform (:func:`layer_volume`).
    """
    data, state, _kind = layer.as_layer_data_tuple()
    meta = layer.metadata or {}
    source = meta.get("volume")
    axes = meta.get("axes")
    if isinstance(source, Volume) and axes is not None:
        shown = source.geometry.transposed(tuple(axes))
        if tuple(np.shape(data)) == shown.shape and geometry_from_layer_state(data, state).same_grid(shown):
            current = np.transpose(np.asarray(data), tuple(int(i) for i in np.argsort(axes)))
            return source if current is source.array else replace(source, array=current)
    return layer_volume(data, state, name=layer.name)
