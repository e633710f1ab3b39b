"""What a napari layer *is* to this plugin: its role and the facts it carries.

The one module that knows the string keys of ``layer.metadata``; everything else (overlays,
panels, reader, writer) asks these accessors. napari adapter: never imports Qt.

A role is the layer's ``metadata["kind"]``; a layer made from a loaded
:class:`~napari_mlmi_interp.io.Volume` without a kind (a scan, a mask, a reference region)
is :attr:`Role.SCAN`, marked by the Volume it carries. The accessors take a layer, a
layer's metadata dict or a LayerData tuple ``(data, kwargs, layer_type)`` alike, so the
same names serve layers on screen and layers still being built off the GUI thread.

Examples
--------
>>> meta = layer_metadata(Role.HEATMAP, group="scan · Grad-CAM · lesion", percent=1.0)
>>> role_of(meta), group_of(meta), percent_of(meta, 5.0)
(<Role.HEATMAP: 'heatmap'>, 'scan · Grad-CAM · lesion', 1.0)
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..explain import Explanation
    from ..io.volume import Volume

__all__ = [
    "DERIVED",
    "Role",
    "axes_of",
    "blinded_label_of",
    "contour_source_of",
    "explanation_of",
    "group_of",
    "layer_metadata",
    "layers_of",
    "metadata_of",
    "model_key_of",
    "own_scale_of",
    "percent_of",
    "role_of",
    "scale_of",
    "scan_for",
    "scan_layer_for",
    "scan_layers",
    "scan_name_of",
    "scan_of",
    "set_blinded_label",
    "set_percent",
    "set_role",
    "set_scale",
    "set_study_item",
    "source_volume_of",
    "state_metadata",
    "study_item_of",
    "update_metadata",
]


class Role(StrEnum):
    """The kinds of layers the plugin makes (values: the ``metadata["kind"]`` strings)."""

    #: a layer showing a loaded Volume with no other role (scan, mask, reference region);
    #: today marked by ``metadata["volume"]`` and no kind
    SCAN = "scan"
    HEATMAP = "heatmap"
    CONTOUR = "contour"
    ISOSURFACE = "isosurface"
    SIMILARITY = "similarity"
    COMPARE_ANATOMY = "compare-anatomy"
    ANNOTATION = "annotation"


#: Image layers made from a result, never offered as the scan to explain.
DERIVED = (Role.HEATMAP, Role.SIMILARITY, Role.COMPARE_ANATOMY)

# python name -> metadata key: the only place the keys are spelled
_KEYS = {
    "role": "kind",
    "volume": "volume",
    "axes": "axes",
    "case_id": "case_id",
    "modality": "modality",
    "group": "group",
    "method": "method",
    "peak_lps": "peak_lps",
    "percent": "percent",
    "scale": "scale",
    "own_scale": "own_scale",
    "signed": "signed",
    "source": "source",
    "explanation": "explanation",
    "model_key": "model_key",
    "scan_name": "scan_name",
    "blinded_label": "blinded_label",
    "study_item": "study_item",
}


def metadata_of(obj: Any) -> dict:
    """The metadata dict of a layer, a LayerData tuple, or ``obj`` itself when it is a dict.

    The dict itself (changes stick); for merging a caller's own extra metadata into a new
    layer's. Read and write the plugin's facts through the accessors, not through it.
    """
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, tuple):
        return obj[1].setdefault("metadata", {})
    meta = getattr(obj, "metadata", None)
    return meta if meta is not None else {}


def _get(obj: Any, field: str, default: Any = None) -> Any:
    return metadata_of(obj).get(_KEYS[field], default)


def layer_metadata(role: Role | None = None, **fields: Any) -> dict[str, Any]:
    """A metadata dict for a new layer: its ``role`` and the given facts.

    Fields are the accessors' names: ``volume``, ``axes``, ``case_id``, ``modality``,
    ``group``, ``method``, ``peak_lps`` (LPS mm), ``percent`` (top-k %), ``scale``,
    ``own_scale``, ``signed``, ``source`` (the native map a contour is recomputed from),
    ``explanation``, ``model_key`` (:func:`~napari_mlmi_interp.models.held.held_models`),
    ``scan_name``, ``blinded_label``, ``study_item``.

    Raises
    ------
    TypeError
        For a field name that is not one of those.
    """
    unknown = sorted(set(fields) - set(_KEYS))
    if unknown:
        raise TypeError(f"unknown layer metadata fields: {unknown}")
    meta = {_KEYS[k]: v for k, v in fields.items()}
    if role is not None:
        meta[_KEYS["role"]] = Role(role).value
    return meta


def update_metadata(obj: Any, role: Role | None = None, **fields: Any) -> None:
    """Set ``role`` and facts (the :func:`layer_metadata` fields) on a layer or LayerData."""
    metadata_of(obj).update(layer_metadata(role, **fields))


def state_metadata(state: dict[str, Any]) -> dict[str, Any]:
    """The layer metadata inside a layer *state* dict (``as_layer_data_tuple()[1]``, writer meta)."""
    return state.get("metadata") or {}


# -- roles -----------------------------------------------------------------------------------------


def role_of(layer: Any) -> Role | None:
    """The layer's role: its kind, else :attr:`Role.SCAN` when it carries a Volume, else None."""
    kind = _get(layer, "role")
    if kind is None:
        return Role.SCAN if _get(layer, "volume") is not None else None
    try:
        return Role(kind)
    except ValueError:  # a kind written by someone else: not one of ours
        return None


def set_role(layer: Any, role: Role) -> None:
    """Give ``layer`` (or LayerData, or a metadata dict) the role ``role``."""
    metadata_of(layer)[_KEYS["role"]] = Role(role).value


def layers_of(viewer: Any, role: Role, *, group: str | None = None) -> list:
    """The viewer's layers with ``role`` (and, when given, of the name ``group``), in layer order."""
    role = Role(role)
    return [ly for ly in viewer.layers if role_of(ly) is role and (group is None or group_of(ly) == group)]


def scan_layers(viewer: Any) -> list:
    """3D image layers that can be explained: any image layer but heatmaps, similarity maps
    and compare-mode copies (a plain image added without metadata counts)."""
    from napari.layers import Image

    return [
        ly for ly in viewer.layers if isinstance(ly, Image) and ly.ndim == 3 and role_of(ly) not in DERIVED
    ]


# -- facts -----------------------------------------------------------------------------------------


def source_volume_of(obj: Any) -> Volume | None:
    """The Volume a layer was made from (``volume_layer_data``), whatever its role; or None."""
    return _get(obj, "volume")


def scan_of(layer: Any) -> Volume | None:
    """The Volume a scan layer shows (as loaded); None for a layer of another role."""
    return source_volume_of(layer) if role_of(layer) is Role.SCAN else None


def axes_of(obj: Any, default: Any = None) -> tuple[int, ...] | None:
    """The axis permutation between the source array (z, y, x) and the layer's data."""
    axes = _get(obj, "axes")
    return tuple(axes) if axes is not None else default


def group_of(obj: Any) -> str | None:
    """The name group of an explanation's layers (``<scan> · <method> · <target>``)."""
    return _get(obj, "group")


def percent_of(obj: Any, default: float) -> float:
    """The top-k percent a contour or surface layer shows (``default`` when it has none)."""
    return float(_get(obj, "percent", default))


def set_percent(obj: Any, percent: float) -> None:
    """Record a contour's new top-k percent."""
    metadata_of(obj)[_KEYS["percent"]] = float(percent)


def scale_of(obj: Any) -> float | None:
    """The divisor a heatmap layer's data was divided by (data x scale = the map); or None."""
    scale = _get(obj, "scale")
    return float(scale) if scale is not None else None


def own_scale_of(obj: Any) -> float | None:
    """A heatmap's own robust scale (what :func:`scale_of` was before a shared scale)."""
    own = _get(obj, "own_scale")
    return float(own) if own is not None else scale_of(obj)


def set_scale(obj: Any, scale: float, *, own: float | None = None) -> None:
    """Record a heatmap's current divisor (and, when given, its own robust scale)."""
    meta = metadata_of(obj)
    meta[_KEYS["scale"]] = float(scale)
    if own is not None:
        meta[_KEYS["own_scale"]] = float(own)


def contour_source_of(obj: Any) -> Volume | None:
    """The native-grid map a contour layer's top-k region is recomputed from."""
    return _get(obj, "source")


def explanation_of(obj: Any) -> Explanation | None:
    """The :class:`~napari_mlmi_interp.explain.Explanation` behind a heatmap layer; or None."""
    return _get(obj, "explanation")


def model_key_of(obj: Any) -> str | None:
    """The key of the model that made a heatmap, for ``held_models().get(key)``; or None."""
    return _get(obj, "model_key")


def scan_name_of(obj: Any) -> str | None:
    """The name the scan layer had when the explanation was run."""
    return _get(obj, "scan_name")


def blinded_label_of(obj: Any) -> str | None:
    """The label a reader study shows instead of the method's name; or None."""
    return _get(obj, "blinded_label")


def set_blinded_label(obj: Any, label: str) -> None:
    """Record the blinded label on a heatmap (layer or LayerData)."""
    metadata_of(obj)[_KEYS["blinded_label"]] = label


def study_item_of(obj: Any) -> str | None:
    """The reader-study item a layer belongs to; or None."""
    return _get(obj, "study_item")


def set_study_item(obj: Any, item_id: str) -> None:
    """Mark a layer as part of reader-study item ``item_id`` (removed with it)."""
    metadata_of(obj)[_KEYS["study_item"]] = item_id


# -- from an explanation's layer to its scan -------------------------------------------------------


def scan_layer_for(viewer: Any, layer: Any) -> Any:
    """The scan layer an explanation layer was computed on; None when it is gone.

    The scan layer named as it was at the run (:func:`scan_name_of`) when it is still on the
    explanation's grid, else the first scan layer on that grid with the same case id.
    """
    from .volume_layers import volume_of_layer

    explanation = explanation_of(layer)
    if explanation is None:
        return None
    native = explanation.native

    def fits(candidate: Any) -> bool:
        try:
            volume = volume_of_layer(candidate)
        except ValueError:  # a 2D or sheared layer
            return False
        return volume.shape == native.shape and volume.geometry.same_grid(native.geometry)

    candidates = scan_layers(viewer)
    named = [ly for ly in candidates if ly.name == scan_name_of(layer)]
    for ly in named + [ly for ly in candidates if ly not in named]:
        if fits(ly) and (ly in named or getattr(scan_of(ly), "case_id", native.case_id) == native.case_id):
            return ly
    return None


def scan_for(viewer: Any, layer: Any) -> Volume | None:
    """The scan Volume (as shown now, LPS mm) an explanation layer was computed on; or None.

    What ``metadata["scan"]`` held before layers stopped carrying the scan twice.
    """
    from .volume_layers import volume_of_layer

    scan_layer = scan_layer_for(viewer, layer)
    return volume_of_layer(scan_layer) if scan_layer is not None else None
