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
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..io.volume import Geometry, Volume
from .roles import axes_of, layer_metadata, source_volume_of, state_metadata

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "LPS_AXIS_LABELS",
    "add_layer_data",
    "arrange_when_added",
    "contrast_limits",
    "geometry_from_layer_state",
    "is_label_map",
    "keep_surfaces_in_place",
    "layer_volume",
    "set_radiological_view",
    "show_radiologically",
    "slice_point",
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
    meta = layer_metadata(volume=volume, axes=axes, case_id=volume.case_id, modality=volume.modality)
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
    """Recover a Geometry from a layer's data and state (``layer.as_layer_data_tuple()[1]`` / writer meta).

    Composes the layer's affine with its scale/translate/rotate/shear, i.e. its full
    data-to-world transform; world is taken as LPS mm.

    Raises
    ------
    InputError
        If the layer is not 3D (a ValueError, as is the shear error of :class:`Geometry`).
    """
    from napari.utils.transforms import Affine

    ndim = np.ndim(data)
    if ndim != 3:
        raise InputError(f"only 3D layers can be saved as volumes, got {ndim}D data")
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
    source = source_volume_of(state_metadata(meta))
    axes = axes_of(state_metadata(meta))
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
        raise InputError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    if viewer.dims.ndim != 3:
        return
    order, vertical = _PLANES[plane]
    from .orientation import show_anatomically_in_3d, show_orientation_letters
    from .readout import show_cursor_readout

    viewer.dims.order = order
    viewer.dims.axis_labels = LPS_AXIS_LABELS
    viewer_camera(viewer).orientation2d = (vertical, "right")
    viewer.reset_view()
    show_orientation_letters(viewer)  # A/P, R/L, S/I on the canvas edges; L, P, S axes in 3D
    show_anatomically_in_3d(viewer)
    show_cursor_readout(viewer)  # LPS mm, voxel, scan and map values in the status bar


def slice_point(volume: Volume, focus_lps: Any = None) -> tuple[float, float, float]:
    """LPS mm of the voxel centre nearest ``focus_lps`` (default: the volume's middle voxel).

    The middle voxel is index ``(n - 1) // 2`` along each array axis (napari's own centre
    step). Snapping to a voxel centre keeps the slider on a slice of the scan, so the point
    napari reports (mm) is the position of the slice shown.
    """
    shape = np.asarray(volume.shape)
    if focus_lps is None:
        index = (shape - 1) // 2
    else:
        index = np.clip(np.round(volume.geometry.to_index(np.asarray(focus_lps, float))), 0, shape - 1)
    return tuple(float(c) for c in volume.geometry.to_lps(index))


def show_radiologically(
    viewer: napari.Viewer,
    volume: Volume,
    *,
    plane: str | None = None,
    focus_lps: Any = None,
) -> None:
    """Arrange ``viewer`` for ``volume`` the way ``mlmi-interp view`` does.

    :func:`set_radiological_view` in ``plane`` (default: the volume's acquisition plane),
    then the slice through ``focus_lps`` (default: the middle of the volume), snapped to a
    voxel centre by :func:`slice_point`.
    """
    set_radiological_view(viewer, plane or volume.geometry.acquisition_plane())
    if viewer.dims.ndim == 3:
        viewer.dims.point = slice_point(volume, focus_lps)


def arrange_when_added(volume: Volume, *, plane: str | None = None) -> None:
    """Once ``volume``'s layer lands in the (empty) current viewer, :func:`show_radiologically`.

    For npe2 readers and sample data, which return LayerData and never see the viewer
    (napari/napari#6127, #1075: a reader cannot set ``dims.order`` or the camera). The
    current viewer's ``layers.events.inserted`` is watched for one insertion; the viewer is
    arranged only when that layer shows ``volume`` (``metadata["volume"]``), so a viewer
    that already holds layers keeps the user's view. Without a viewer (scripted use) this
    does nothing.
    """
    import napari

    viewer = napari.current_viewer()
    if viewer is None or len(viewer.layers) > 0:
        return

    def _on_inserted(event: Any) -> None:
        viewer.layers.events.inserted.disconnect(_on_inserted)
        if (getattr(event, "value", None) is not None) and source_volume_of(event.value) is volume:
            show_radiologically(viewer, volume, plane=plane)

    viewer.layers.events.inserted.connect(_on_inserted)


def add_layer_data(viewer: napari.Viewer, layer_data: tuple) -> Any:
    """Add one LayerData tuple ``(data, kwargs, layer_type)`` to ``viewer``; the new layer.

    Public napari API only (``Layer.create`` + ``viewer.add_layer``).
    """
    from napari.layers import Layer

    data, attrs, layer_type = (*layer_data, {}, None)[:3]
    layer = viewer.add_layer(Layer.create(data, attrs, layer_type))
    if layer_type == "surface":
        keep_surfaces_in_place(viewer)
    return layer


_SURFACE_GUARDED: weakref.WeakSet = weakref.WeakSet()


def keep_surfaces_in_place(viewer: napari.Viewer) -> None:
    """Show surfaces where they are in 3D: the dims order is the identity while ``ndisplay == 3``.

    napari 0.9 slices a Surface layer without reordering its vertices when every axis is
    displayed (``napari/layers/surface/_slice.py`` returns ``data[0]`` as it is), while image
    and labels layers follow ``dims.order``. With the radiological axial order ``(2, 1, 0)``
    an isosurface would then sit elsewhere, its axes swapped, in the 3D view. So, while the
    viewer shows all three axes in 3D (where the camera, not the order, sets the view) the order is the
    identity; the 2D order the reader had is put back on return to 2D. Connected once per
    viewer, by :func:`add_layer_data` when it adds a surface.
    """
    if viewer in _SURFACE_GUARDED:
        return
    _SURFACE_GUARDED.add(viewer)
    dims = viewer.dims
    saved: dict[str, tuple[int, ...]] = {}

    def _guard(event: Any = None) -> None:
        order = tuple(dims.order)
        # only when every axis is displayed (the case napari gets wrong); a 4D viewer in 3D
        # slices the surface itself and keeps the user's order
        if dims.ndisplay == 3 and dims.ndim == 3 and order != (0, 1, 2):
            saved.setdefault("order", order)
            dims.order = (0, 1, 2)
        elif dims.ndisplay == 2 and "order" in saved:
            previous = saved.pop("order")
            if len(previous) == dims.ndim:
                dims.order = previous

    dims.events.ndisplay.connect(_guard)
    dims.events.order.connect(_guard)
    _guard()


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
    source = source_volume_of(layer)
    axes = axes_of(layer)
    if isinstance(source, Volume) and axes is not None:
        shown = source.geometry.transposed(tuple(axes))
        if tuple(np.shape(data)) == shown.shape and geometry_from_layer_state(data, state).same_grid(shown):
            current = np.transpose(np.asarray(data), tuple(int(i) for i in np.argsort(axes)))
            return source if current is source.array else replace(source, array=current)
    return layer_volume(data, state, name=layer.name)
