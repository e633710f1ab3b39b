"""Orientation letters on the canvas edges (2D) and L/P/S axes (3D), as radiology viewers show them.

napari's world axes are LPS millimetres (:mod:`.volume_layers`), so the letter at each edge
of a 2D canvas follows from the two displayed world axes and the camera's ``orientation2d``:
world axis 0 runs from the patient's right (R) to left (L), axis 1 from anterior (A) to
posterior (P), axis 2 from inferior (I) to superior (S). An oblique stack is shown in world
axes too, so its letters name the nearest patient axis, as PACS viewers do.

Public napari API only: four :class:`napari.components.overlays.TextOverlay` under new keys
of ``viewer.canvas.overlays`` (napari draws any overlay added there), updated on the dims'
order and ndisplay events and the camera's orientation event; in 3D the letters hide and the
canvas axes overlay shows L, P and S at the positive end of each arrow.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "LPS_LETTERS",
    "contours_for_surfaces",
    "edge_letters",
    "look_from_anterior",
    "orientation_letters",
    "show_anatomically_in_3d",
    "show_orientation_letters",
    "surfaces_for_contours",
]

#: (negative end, positive end) of world axes 0, 1, 2 (L, P, S in mm).
LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))

#: The canvas positions of the four letters.
EDGES = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left", "right": "middle_right"}

_KEY = "mlmi_orientation_{}"
_SHOWN: weakref.WeakSet = weakref.WeakSet()
_IN_3D: weakref.WeakSet = weakref.WeakSet()

#: Said on the canvas in 3D: the standard view, or another one.
VIEW_3D_TEXT = "3D from anterior: patient's left on the right, head up"
VIEW_3D_ROTATED = "3D, rotated: the arrows point to the patient's left (L), back (P) and head (S)"
#: The standard 3D view, in world (L, P, S) axes: from anterior (looking along +P), head up,
#: so the patient's left is on the viewer's right, as in the 2D radiological convention.
VIEW_FROM_ANTERIOR = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def edge_letters(displayed: tuple[int, int], orientation2d: tuple[str, str]) -> dict[str, str]:
    """The letter at each edge of a 2D canvas.

    Parameters
    ----------
    displayed : (int, int)
        The world axes shown vertically (rows) and horizontally (columns), napari's
        ``dims.displayed`` in 2D.
    orientation2d : (str, str)
        The camera's ``orientation2d``: ``"down"`` or ``"up"`` (the vertical axis grows
        downwards or upwards), ``"right"`` or ``"left"``.

    Returns
    -------
    dict
        ``{"top": .., "bottom": .., "left": .., "right": ..}``: the radiological axial view
        (world axes 1 and 0, ``("down", "right")``) gives A, P, R, L.
    """
    vertical_axis, horizontal_axis = (int(a) for a in displayed)
    vertical, horizontal = (str(o) for o in orientation2d)
    if not {vertical_axis, horizontal_axis} <= {0, 1, 2} or vertical_axis == horizontal_axis:
        raise InputError(f"displayed must be two different world axes of 0, 1, 2, got {displayed}")
    if vertical not in ("down", "up") or horizontal not in ("right", "left"):
        raise InputError(f"orientation2d must be ('down'|'up', 'right'|'left'), got {orientation2d}")
    (v_neg, v_pos), (h_neg, h_pos) = LPS_LETTERS[vertical_axis], LPS_LETTERS[horizontal_axis]
    top, bottom = (v_neg, v_pos) if vertical == "down" else (v_pos, v_neg)
    left, right = (h_neg, h_pos) if horizontal == "right" else (h_pos, h_neg)
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def orientation_letters(viewer: napari.Viewer) -> dict[str, str] | None:
    """The letters ``viewer`` shows now, edge by edge; None when none are shown (3D, not LPS)."""
    overlays = viewer.canvas.overlays
    if _KEY.format("top") not in overlays:
        return None
    shown = {edge: overlays[_KEY.format(edge)] for edge in EDGES}
    if not all(o.visible for o in shown.values()):
        return None
    return {edge: str(o.text) for edge, o in shown.items()}


def show_orientation_letters(viewer: napari.Viewer, *, font_size: float = 14, color: Any = "#b3e5fc") -> None:
    """Letters on the four edges of ``viewer``'s canvas that follow the plane and flips.

    Idempotent per viewer. Shown while 2D displays two of the three LPS world axes (a viewer
    whose ``dims.axis_labels`` are L, P, S); hidden in 3D, where the canvas axes overlay shows
    L, P, S instead. Light blue by default: no heatmap colormap uses it, so the letters are
    never read as attribution.
    """
    from napari.components.overlays import TextOverlay

    from .volume_layers import LPS_AXIS_LABELS, viewer_camera

    if viewer in _SHOWN:
        _update(viewer)
        return
    _SHOWN.add(viewer)
    for edge, position in EDGES.items():
        viewer.canvas.overlays[_KEY.format(edge)] = TextOverlay(
            text="", position=position, font_size=font_size, color=color, box=False, visible=False
        )
    # 3D: what the standard view is, said on the canvas (show_anatomically_in_3d sets it)
    viewer.canvas.overlays[_KEY.format("3d")] = TextOverlay(
        text=VIEW_3D_TEXT, position="top_left", font_size=font_size - 3, color=color, box=False, visible=False
    )
    camera = viewer_camera(viewer)
    ref = weakref.ref(viewer)

    def update(event: Any = None) -> None:
        live = ref()
        if live is not None:
            _update(live, LPS_AXIS_LABELS)

    for emitter in (
        viewer.dims.events.order,
        viewer.dims.events.ndisplay,
        viewer.dims.events.ndim,
        viewer.dims.events.axis_labels,
        camera.events.orientation,
        camera.events.angles,
    ):
        emitter.connect(update)
    update()


def _update(viewer: napari.Viewer, lps: tuple[str, ...] = ("L", "P", "S")) -> None:
    from .volume_layers import viewer_camera

    dims = viewer.dims
    in_lps = dims.ndim == 3 and tuple(dims.axis_labels) == tuple(lps)
    caption = viewer.canvas.overlays[_KEY.format("3d")]
    caption.visible = in_lps and dims.ndisplay == 3
    if caption.visible:  # say the view only while it is the standard one
        caption.text = VIEW_3D_TEXT if _standard_3d(viewer) else VIEW_3D_ROTATED
    letters = None
    if in_lps and dims.ndisplay == 2:
        letters = edge_letters(tuple(dims.displayed[-2:]), tuple(viewer_camera(viewer).orientation2d))
    for edge in EDGES:
        overlay = viewer.canvas.overlays[_KEY.format(edge)]
        overlay.text = letters[edge] if letters else ""
        overlay.visible = letters is not None
    if in_lps:  # 3D: the canvas axes (L, P, S at the arrows' positive ends, from dims.axis_labels)
        axes = viewer.canvas.overlays.axes
        axes.visible = dims.ndisplay == 3
        axes.labels = True


def show_anatomically_in_3d(viewer: napari.Viewer) -> None:
    """Entering 3D, look from anterior with the head up (patient's left on the viewer's right).

    The 2D radiological flips (``orientation2d``, e.g. ``("up", "right")`` for coronal) are
    part of the 3D camera's orientation too and would mirror the 3D rendering (a left-handed
    camera); entering 3D the camera gets napari's right-handed default orientation, the dims
    order the identity (in 3D the camera, not the order, sets the view) and the view
    :data:`VIEW_FROM_ANTERIOR`; the top-k contours give way to their isosurfaces
    (:func:`surfaces_for_contours`); back in 2D the plane's order, flips and contours
    return. Idempotent per viewer; only for an LPS viewer (``dims.axis_labels`` L, P, S,
    three dimensions).
    """
    from .volume_layers import LPS_AXIS_LABELS, viewer_camera

    if viewer in _IN_3D:
        return
    _IN_3D.add(viewer)
    ref = weakref.ref(viewer)
    saved: dict[str, Any] = {}

    def on_ndisplay(event: Any = None) -> None:
        live = ref()
        if live is None:
            return
        dims, camera = live.dims, viewer_camera(live)
        if dims.ndim != 3 or tuple(dims.axis_labels) != LPS_AXIS_LABELS:
            return
        if dims.ndisplay == 3 and "orientation2d" not in saved:
            saved["orientation2d"], saved["order"] = tuple(camera.orientation2d), tuple(dims.order)
            dims.order = (0, 1, 2)
            look_from_anterior(live)
            saved["swapped"] = surfaces_for_contours(live)
        elif dims.ndisplay == 2 and "orientation2d" in saved:
            order, flips = saved.pop("order"), saved.pop("orientation2d")
            if tuple(dims.order) == (0, 1, 2):  # the user did not pick another plane in 3D
                dims.order = order
            camera.orientation2d = flips
            contours_for_surfaces(saved.pop("swapped", []))

    viewer.dims.events.ndisplay.connect(on_ndisplay)


def look_from_anterior(viewer: napari.Viewer) -> None:
    """The standard 3D view: a right-handed camera looking along +P (from anterior), head up.

    Call after ``viewer.reset_view()`` too (it resets the camera's angles). The dims order must
    be the identity (as :func:`show_anatomically_in_3d` makes it in 3D).
    """
    from .volume_layers import viewer_camera

    camera = viewer_camera(viewer)
    camera.orientation = ("towards", "down", "right")
    camera.set_view_direction(*VIEW_FROM_ANTERIOR)


def _standard_3d(viewer: napari.Viewer) -> bool:
    """Whether ``viewer``'s 3D camera looks from anterior, head up, right-handed."""
    from .volume_layers import viewer_camera

    camera = viewer_camera(viewer)
    if tuple(viewer.dims.order) != (0, 1, 2) or not str(camera.handedness).lower().endswith("right"):
        return False
    view, up = VIEW_FROM_ANTERIOR
    return bool(
        np.allclose(camera.view_direction, view, atol=1e-3)
        and np.allclose(camera.up_direction, up, atol=1e-3)
    )


def surfaces_for_contours(viewer: napari.Viewer) -> list[tuple[Any, Any]]:
    """In 3D, each visible top-k contour (a Labels layer: a blocky mass there) gives way to
    its explanation's isosurface; returns the (contour, surface) pairs swapped."""
    from .roles import Role, group_of, layers_of

    swapped = []
    for contour in layers_of(viewer, Role.CONTOUR):
        if not contour.visible:
            continue
        surfaces = layers_of(viewer, Role.ISOSURFACE, group=group_of(contour))
        contour.visible = False
        for surface in surfaces:
            if not surface.visible:
                surface.visible = True
                swapped.append((contour, surface))
        if not surfaces:
            swapped.append((contour, None))
    return swapped


def contours_for_surfaces(swapped: list[tuple[Any, Any]]) -> None:
    """Back in 2D: the contours :func:`surfaces_for_contours` hid are shown, its surfaces hidden."""
    for contour, surface in swapped:
        contour.visible = True
        if surface is not None:
            surface.visible = False
