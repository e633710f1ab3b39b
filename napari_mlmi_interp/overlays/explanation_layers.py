"""Explanations as napari layers: heatmap, top-k contour, isosurface, similarity maps.

Every layer is built on the scan's own geometry through :func:`volume_layer_data`, so its
affine equals the scan layer's (world = LPS mm). napari adapter: may import napari, never Qt.

Display conventions (what a reader expects from a heat map on anatomy):

- the layer's data is the native-grid map divided by its *robust scale* (the 99.5th
  percentile of ``|map|`` over the voxels where it is not zero), so every heatmap shares
  the limits ``[0, 1]`` (non-negative maps) or ``[-1, 1]`` (signed maps) and two methods
  can be compared by eye (for non-negative maps the lower limit is raised to the 90th
  percentile of the map's positive values, so the broad low floor of a class-activation
  map stays transparent; the layer controls can lower it); a ``scale`` can be shared across layers instead
  (:func:`shared_scale`). ``metadata["scale"]`` keeps the divisor, so values stay exact.
- non-negative maps use a sequential colormap fading from transparent (0) through red
  to yellow; signed maps a diverging blue-transparent-red one centred at 0. Values near 0
  are transparent, so the anatomy stays readable under translucent blending.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..metrics.regions import DEFAULT_TOPK_PERCENT, topk_mask
from ..palette import DIVERGING_CONTROLS, DIVERGING_RGBA, HEAT_CONTROLS, HEAT_RGBA
from .roles import (
    Role,
    axes_of,
    contour_source_of,
    group_of,
    layer_metadata,
    layers_of,
    metadata_of,
    own_scale_of,
    role_of,
    scale_of,
    set_percent,
    set_role,
    set_scale,
    update_metadata,
)
from .volume_layers import add_layer_data, volume_layer_data

__all__ = [
    "add_explanation_layers",
    "add_layer",
    "compare_layers",
    "contour_layer_data",
    "diverging_colormap",
    "end_compare",
    "explanation_layer_data",
    "heatmap_layer_data",
    "isosurface_layer_data",
    "layer_name",
    "rescale_heatmaps",
    "robust_scale",
    "sequential_colormap",
    "set_contour_percent",
    "shared_scale",
    "topk_labels",
]


def layer_name(scan_name: str, method_title: str, target_name: str, suffix: str = "") -> str:
    """``<scan> · <method> · <target>`` (plus `` · suffix``): an explanation's name group."""
    name = f"{scan_name} · {method_title} · {target_name}"
    return f"{name} · {suffix}" if suffix else name


def short_name(method_title: str, target_name: str, suffix: str = "") -> str:
    """``<method> · <target>`` (plus `` · suffix``): what the layer list shows, short enough to
    read there; the scan is in the layer's ``metadata["scan_name"]`` and its name group."""
    name = f"{method_title} · {target_name}"
    return f"{name} · {suffix}" if suffix else name


def robust_scale(array: np.ndarray, percentile: float = 99.5) -> float:
    """The ``percentile`` of ``|array|`` over its non-zero voxels (1.0 for an all-zero map)."""
    a = np.abs(np.asarray(array, dtype=np.float64))
    nz = a[a > 0]
    if nz.size == 0:
        return 1.0
    value = float(np.percentile(nz, percentile))
    return value if value > 0 else float(nz.max())


def shared_scale(arrays: list[np.ndarray], percentile: float = 99.5) -> float:
    """One scale for several maps (the largest of their robust scales): a fair comparison."""
    return max(robust_scale(a, percentile) for a in arrays)


def sequential_colormap():
    """Transparent at 0, then dark red, red, orange, yellow at 1 (for non-negative maps)."""
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=HEAT_RGBA.tolist(),
        controls=HEAT_CONTROLS.tolist(),
        name="mlmi-heat",
        display_name="heat (transparent at 0)",
    )


def diverging_colormap():
    """Blue at -1, transparent at 0, red at +1 (for signed maps; limits kept symmetric)."""
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=DIVERGING_RGBA.tolist(),
        controls=DIVERGING_CONTROLS.tolist(),
        name="mlmi-diverging",
        display_name="diverging (transparent at 0)",
    )


def heatmap_layer_data(
    native: Volume,
    *,
    signed: bool,
    name: str | None = None,
    scale: float | None = None,
    blending: str = "translucent",
    opacity: float = 0.8,
    metadata: dict[str, Any] | None = None,
) -> tuple:
    """Image LayerData for a native-grid attribution map (see the module notes).

    Parameters
    ----------
    native : Volume
        The map on the scan's grid (``Explanation.native``).
    signed : bool
        Diverging colormap and symmetric limits ``[-1, 1]``; else sequential, with limits
        from the 90th percentile of the positive values to 1.
    scale : float, optional
        Divide by this instead of the map's own :func:`robust_scale` (share it across
        layers to compare methods on one scale).
    blending : {"translucent", "additive"}
    """
    if blending not in ("translucent", "additive", "translucent_no_depth"):
        raise InputError(f"blending must be 'translucent' or 'additive', got {blending!r}")
    s = float(scale) if scale else robust_scale(native.array)
    shown = native.with_array((native.array / s).astype(np.float32), name=name or native.name)
    data, attrs, kind = volume_layer_data(shown, layer_type="image")
    floor = 0.0
    if not signed:  # a class map's broad low floor stays transparent: show its top 10 %
        positive = shown.array[shown.array > 0]
        floor = float(min(np.percentile(positive, 90), 0.9)) if positive.size else 0.0
    attrs.update(
        colormap=diverging_colormap() if signed else sequential_colormap(),
        contrast_limits=(-1.0, 1.0) if signed else (floor, 1.0),
        blending=blending,
        opacity=opacity,
        interpolation2d="linear",
        interpolation3d="linear",
        rendering="mip" if not signed else "attenuated_mip",
    )
    update_metadata((data, attrs, kind), Role.HEATMAP, scale=s, signed=bool(signed))
    metadata_of((data, attrs, kind)).update(metadata or {})
    return data, attrs, kind


def topk_labels(native: Volume, percent: float) -> np.ndarray:
    """uint8 mask (1 = in the top ``percent`` % with positive attribution), source array order."""
    return topk_mask(native.array, percent).astype(np.uint8)


def contour_layer_data(
    native: Volume,
    *,
    percent: float = DEFAULT_TOPK_PERCENT,
    name: str | None = None,
    color: tuple[float, float, float, float] = (0.2, 1.0, 0.3, 1.0),
    metadata: dict[str, Any] | None = None,
) -> tuple:
    """Labels LayerData outlining the top ``percent`` % region (napari contour mode).

    ``metadata["percent"]`` records k; :func:`topk_labels` recomputes the data when k
    changes (the layer stays in the scan's geometry: only its data changes).
    """
    mask = native.with_array(topk_labels(native, percent), name=name or f"{native.name} · top {percent:g}%")
    data, attrs, kind = volume_layer_data(mask, layer_type="labels")
    from napari.utils.colormaps import DirectLabelColormap

    attrs.update(
        opacity=1.0,
        colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: color}),
    )
    update_metadata((data, attrs, kind), Role.CONTOUR, percent=float(percent), source=native)
    metadata_of((data, attrs, kind)).update(metadata or {})
    return data, attrs, kind  # set ``layer.contour = 1`` once added (not a constructor argument)


def isosurface_layer_data(
    native: Volume,
    *,
    percent: float = DEFAULT_TOPK_PERCENT,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple | None:
    """Surface LayerData of the top ``percent`` % region, by marching cubes on the scan's grid.

    The mesh is computed in voxel indices on the native grid (scikit-image
    ``marching_cubes``); its vertices are kept in the indices of the scan layer's array
    (the same axis permutation, ``metadata["axes"]``) and the layer gets the scan layer's
    affine, so every vertex lands in LPS mm (oblique and anisotropic grids included) and
    napari's slider keeps the scan's slice spacing as its step (a surface in raw mm would
    make it 1 mm). Vertices are clipped to the grid (``0 .. n - 1``), so the surface never
    widens the world extent. Vertex values are the map there (normalised by its robust
    scale), coloured with inferno. Returns None when the region is empty.
    """
    from skimage.measure import marching_cubes

    mask = topk_mask(native.array, percent)
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.float32), 1)
    verts, faces, _normals, _values = marching_cubes(padded, level=0.5)
    # undo the padding; a region touching the border stays on the grid (no half-voxel overhang)
    verts_index = np.clip(verts - 1.0, 0.0, np.asarray(native.shape, float) - 1.0)
    axes = native.geometry.nearest_lps_permutation()
    shown = native.geometry.transposed(axes)
    scale = robust_scale(native.array)
    from scipy.ndimage import map_coordinates

    values = map_coordinates(native.array.astype(np.float32), verts_index.T, order=1, mode="nearest") / scale
    attrs = {
        "name": name or f"{native.name} · surface",
        "colormap": "inferno",
        "contrast_limits": (0.0, max(1e-6, float(np.max(values)))),
        "opacity": 0.7,
        "blending": "translucent",
        "shading": "smooth",
        "affine": shown.index_to_lps,
        "units": "mm",
        "axis_labels": ("L", "P", "S"),
        "metadata": {
            **layer_metadata(Role.ISOSURFACE, percent=float(percent), axes=axes),
            **(metadata or {}),
        },
    }
    verts_shown = verts_index[:, list(axes)]
    return (
        (verts_shown.astype(np.float32), faces.astype(np.int64), values.astype(np.float32)),
        attrs,
        "surface",
    )


# --- viewer operations (napari only) -------------------------------------------------------------


def add_layer(viewer: Any, layer_data: tuple) -> Any:
    """Add one LayerData tuple to ``viewer``; the new layer."""
    return add_layer_data(viewer, layer_data)


def explanation_layer_data(
    explanation: Any,
    *,
    scan_name: str,
    method_title: str,
    percent: float = DEFAULT_TOPK_PERCENT,
    scale: float | None = None,
    blending: str = "translucent",
    surface: bool = True,
    model: Any = None,
    model_key: str | None = None,
) -> dict[str, tuple]:
    """The LayerData of an Explanation's heatmap, top-k contour and (optionally) isosurface.

    The heatmap keeps the Explanation (:func:`~.roles.explanation_of`), the key of the model
    that made it (:func:`~.roles.model_key_of`; ``model``, when given, is held in
    :func:`~napari_mlmi_interp.models.held.held_models` under that key) and the scan layer's
    name (:func:`~.roles.scan_for` finds the scan again): the framework sidebar scores any
    heatmap layer from these (layers never carry the scan Volume a second time).

    Pure computation (scaling, top-k, marching cubes): run it off the GUI thread, then
    :func:`add_explanation_layers` only adds the layers. Names are ``<method> · <target>``
    (contour `` · top k%``, surface `` · surface``), short enough for the layer list (napari
    numbers a repeat); every layer carries ``metadata["group"]``, ``<scan> · <method> ·
    <target>``, and ``metadata["scan_name"]``.
    """
    base = layer_name(scan_name, method_title, explanation.target["name"])
    shown = short_name(method_title, explanation.target["name"])
    if model is not None:
        from ..models.held import held_models

        model_key = held_models().hold(model)
    common = layer_metadata(
        group=base, method=explanation.method, peak_lps=explanation.peak_lps().tolist(), scan_name=scan_name
    )
    own = layer_metadata(explanation=explanation, model_key=model_key)
    out = {
        "heatmap": heatmap_layer_data(
            explanation.native,
            signed=explanation.signed,
            name=shown,
            scale=scale,
            blending=blending,
            metadata={**common, **own},
        ),
        "contour": contour_layer_data(
            explanation.native, percent=percent, name=f"{shown} · top {percent:g}%", metadata=common
        ),
    }
    if surface:
        data = isosurface_layer_data(
            explanation.native, percent=percent, name=f"{shown} · surface", metadata=common
        )
        if data is not None:
            out["surface"] = data
    return out


def add_explanation_layers(
    viewer: Any, layer_data: dict[str, tuple], *, replace: bool = True
) -> dict[str, Any]:
    """Add the layers from :func:`explanation_layer_data` (or some of them); returns them by kind.

    With ``replace``, layers of an earlier run with the same name group are removed first, so
    a second run of the same method and target replaces its layers instead of piling them up.
    """
    if replace:
        group = group_of(next(iter(layer_data.values())))
        for layer in [ly for ly in viewer.layers if group_of(ly) == group]:
            viewer.layers.remove(layer)
    out = {kind: add_layer(viewer, data) for kind, data in layer_data.items()}
    if "contour" in out:
        out["contour"].contour = 1
    if "surface" in out:
        out["surface"].visible = viewer.dims.ndisplay == 3
    return out


def set_contour_percent(layer: Any, percent: float) -> None:
    """Recompute a contour layer for a new k (its geometry is untouched)."""
    source = contour_source_of(layer)
    if source is None:
        return
    mask = topk_labels(source, percent)
    axes = axes_of(layer, (0, 1, 2))
    layer.data = np.ascontiguousarray(np.transpose(mask, axes))
    set_percent(layer, percent)
    layer.name = re.sub(r" · top [0-9.]+%( \[\d+\])?$", f" · top {percent:g}%", layer.name)


def compare_layers(viewer: Any, heatmaps: list[Any], anatomy: Any) -> list[Any]:
    """Side by side (napari grid mode): each heatmap over its own view of the anatomy.

    The anatomy layer is shown once per heatmap (new layers sharing its data array, no
    copy); every other layer is hidden; all cells show the same slice. Returns the layers
    added (remove them, or call :func:`end_compare`, to go back).
    """
    if len(heatmaps) < 2:
        raise InputError("compare needs two or more heatmap layers")
    added = []
    for layer in viewer.layers:
        layer.visible = False
    for heat in heatmaps:
        data, attrs, kind = anatomy.as_layer_data_tuple()
        attrs = {k: v for k, v in attrs.items() if k not in ("name",)}
        attrs["name"] = f"{anatomy.name} [{heat.name}]"
        attrs["metadata"] = dict(attrs.get("metadata") or {})  # the anatomy's own stays as it is
        set_role((data, attrs, kind), Role.COMPARE_ANATOMY)
        copy = add_layer(viewer, (data, attrs, kind))
        added.append(copy)
        viewer.layers.move(viewer.layers.index(copy), viewer.layers.index(heat))
        copy.visible = heat.visible = True
    grid = _grid(viewer)
    grid.stride = 2
    grid.enabled = True
    viewer.reset_view()  # fit every cell (the single view's zoom crops the grid)
    return added


def end_compare(viewer: Any) -> None:
    """Leave compare mode: drop the anatomy copies, turn grid mode off, show all layers."""
    for layer in layers_of(viewer, Role.COMPARE_ANATOMY):
        viewer.layers.remove(layer)
    grid = _grid(viewer)
    grid.enabled = False
    grid.stride = 1
    for layer in viewer.layers:
        if role_of(layer) is not Role.ISOSURFACE or viewer.dims.ndisplay == 3:
            layer.visible = True
    viewer.reset_view()


def _grid(viewer: Any) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def rescale_heatmaps(layers: list[Any], scale: float | None = None) -> None:
    """Put heatmap layers on one scale (``scale``; default: the largest of their own scales),
    or back on their own robust scales with ``scale=0``. Values stay exact: ``data *
    metadata["scale"]`` is the map."""
    if not layers:
        return
    own = [own_scale_of(ly) for ly in layers]
    target = max(own) if scale is None else scale
    for layer, own_scale in zip(layers, own, strict=True):
        new = own_scale if not target else float(target)
        old = scale_of(layer)
        set_scale(layer, old, own=own_scale)
        if new != old:
            layer.data = (np.asarray(layer.data) * (old / new)).astype(np.float32)
            set_scale(layer, new)
