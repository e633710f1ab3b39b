"""Key slices: axial, coronal and sagittal slices through a map's peak, heat over the anatomy.

Slices are shown in radiological convention: axial and coronal with the patient's left on the
viewer's right, anterior (axial) and superior (coronal, sagittal) up; each through the map's
peak, with pixels drawn at their physical aspect ratio. Voxels are reordered, never resampled.

The peak is the one :meth:`~napari_mlmi_interp.explain.Explanation.peak_lps` reports and the
localization figures use (:func:`napari_mlmi_interp.metrics.peak_index`): the voxel with the
largest value of the unclipped map, signed maps included. Clipping at the 99.5th percentile is
for the colours only, so a saturated plateau elsewhere never moves the slices.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Geometry, Volume
from ..metrics.localization import peak_index
from ..palette import diverging_rgba

__all__ = ["TICK_COLOUR", "KeySlices", "key_slices", "render_key_slices"]

#: Colour of the ticks that mark the peak on each panel (green: in neither colormap).
TICK_COLOUR = (40, 255, 40)


def _lps_order(geometry: Geometry) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Axis permutation and flips that turn the array into one indexed (L, P, S), each increasing.

    Exact: voxels are reordered, never resampled (an oblique grid is shown on its nearest
    LPS axes, as DICOM viewers do).
    """
    perm = geometry.nearest_lps_permutation()
    d = geometry.direction[:, list(perm)]
    flips = tuple(bool(d[k, k] < 0) for k in range(3))
    return perm, (flips[0], flips[1], flips[2])


def _to_spl(array: np.ndarray, perm: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> np.ndarray:
    """``array`` reordered to (S, P, L), each increasing."""
    a = np.transpose(np.asarray(array), perm)
    a = a[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return a.transpose(2, 1, 0)


def _spl_index(
    index: tuple[int, int, int],
    shape: tuple[int, ...],
    perm: tuple[int, int, int],
    flips: tuple[bool, bool, bool],
) -> tuple[int, int, int]:
    """Where the voxel at array ``index`` lands in :func:`_to_spl`'s array: ``(S, P, L)``."""
    t = [index[p] for p in perm]
    n = [shape[p] for p in perm]
    t = [n[k] - 1 - t[k] if flips[k] else t[k] for k in range(3)]
    return (t[2], t[1], t[0])


def _hot(v: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white ramp for v in [0, 1] (RGB floats)."""
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def _panel(
    grey: np.ndarray,
    heat: np.ndarray,
    aspect: float,
    floor: float | None,
    mark: tuple[int, int],
    height: int = 220,
) -> Any:
    """One slice as a PIL image: grey anatomy, heat over it, ticks at the edges on ``mark`` (row, col).

    ``heat`` is in [-1, 1] (already clipped for display); ``floor`` is None for a signed map
    (diverging colours); ``aspect`` is column spacing over row spacing.
    """
    from PIL import Image, ImageDraw

    lo, hi = np.percentile(grey, [1, 99.5])
    g = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    if floor is None:  # signed: the viewer's diverging colormap at the viewer's opacity (0.8)
        rgba = diverging_rgba(heat)
        alpha = 0.8 * rgba[..., 3:]
        rgb = rgb * (1 - alpha) + rgba[..., :3] * alpha
    else:  # below the floor the anatomy shows through (the viewer's rule: top 10 % of the positives)
        v = np.clip((heat - floor) / max(1 - floor, 1e-6), 0, 1)
        alpha = (v > 0)[..., None] * (0.45 + 0.4 * v[..., None])
        rgb = rgb * (1 - alpha) + _hot(0.34 + 0.5 * v) * alpha  # red at the floor, yellow at the top
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    rows, cols = grey.shape
    width = max(1, round(height * cols * aspect / rows))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    # ticks on the four edges point at the peak without covering it
    y = (mark[0] + 0.5) * height / rows
    x = (mark[1] + 0.5) * width / cols
    tick = max(6, height // 25)
    draw = ImageDraw.Draw(image)
    draw.line([(x, 0), (x, tick)], fill=TICK_COLOUR, width=2)
    draw.line([(x, height - 1 - tick), (x, height - 1)], fill=TICK_COLOUR, width=2)
    draw.line([(0, y), (tick, y)], fill=TICK_COLOUR, width=2)
    draw.line([(width - 1 - tick, y), (width - 1, y)], fill=TICK_COLOUR, width=2)
    return image


@dataclass(frozen=True)
class KeySlices:
    """Three slices through a map's peak, and where that peak is.

    Attributes
    ----------
    png : bytes
        Axial, coronal and sagittal panels side by side (PNG, radiological convention).
    index : tuple of int
        The peak's index in the map's own array, ``(z, y, x)``.
    lps_mm : tuple of float
        The peak's patient position (left, posterior, superior), in mm.
    value : float
        The map's value at the peak (unclipped).
    slices : dict
        ``{"axial": s, "coronal": p, "sagittal": l}``: the slices drawn, as indices along S, P
        and L of the map reordered to (S, P, L) increasing (no resampling).
    """

    png: bytes
    index: tuple[int, int, int]
    lps_mm: tuple[float, float, float]
    value: float
    slices: dict[str, int]


def render_key_slices(scan: Volume, amap: Volume, *, signed: bool = False) -> KeySlices:
    """Axial, coronal and sagittal slices of ``scan`` through the peak of ``amap``, heat overlaid.

    Parameters
    ----------
    scan, amap : Volume
        The scan and its attribution map, on the same grid (the map's geometry places them).
    signed : bool
        Whether the map is signed: negative values (evidence against the target) are then
        drawn in blue. The peak is the largest value either way.
    """
    from PIL import Image

    if tuple(scan.shape) != tuple(amap.shape):
        raise InputError(f"the map must be on the scan's grid, got shapes {amap.shape} and {scan.shape}")
    geometry = amap.geometry
    raw = np.asarray(amap.array, dtype=np.float64)
    peak = peak_index(raw)
    perm, flips = _lps_order(geometry)
    k, j, i = _spl_index(peak, raw.shape, perm, flips)
    grey = _to_spl(np.asarray(scan.array, dtype=np.float32), perm, flips)
    heat = _to_spl(raw, perm, flips)
    sl, sp, ss = (geometry.spacing[a] for a in perm)
    # colours only: clipped at the 99.5th percentile of the attributed voxels
    magnitude = np.abs(heat) if signed else heat
    attributed = magnitude[magnitude > 0]
    scale = float(np.percentile(attributed, 99.5)) if attributed.size else 1.0
    heat = np.clip(heat / max(scale, 1e-12), -1.0 if signed else 0.0, 1.0)
    shown = np.abs(heat[heat != 0])
    floor = None if signed else (float(min(np.percentile(shown, 90), 0.9)) if shown.size else 0.0)
    n_s = heat.shape[0]
    panels = [
        # axial: rows P (anterior up), columns L (patient's left on the right)
        _panel(grey[k], heat[k], sl / sp, floor, (j, i)),
        # coronal: rows S flipped (superior up), columns L
        _panel(grey[::-1, j, :], heat[::-1, j, :], sl / ss, floor, (n_s - 1 - k, i)),
        # sagittal: rows S flipped, columns P (anterior on the left)
        _panel(grey[::-1, :, i], heat[::-1, :, i], sp / ss, floor, (n_s - 1 - k, j)),
    ]
    gap = 6
    strip = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, panels[0].height), (20, 20, 20))
    x = 0
    for p in panels:
        strip.paste(p, (x, 0))
        x += p.width + gap
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    lps = geometry.to_lps(peak)
    return KeySlices(
        buf.getvalue(),
        peak,
        (float(lps[0]), float(lps[1]), float(lps[2])),
        float(raw[peak]),
        {"axial": int(k), "coronal": int(j), "sagittal": int(i)},
    )


def key_slices(scan: Volume, amap: Volume, *, signed: bool = False) -> bytes:
    """PNG: axial, coronal and sagittal slices through the map's peak (see :func:`render_key_slices`)."""
    return render_key_slices(scan, amap, signed=signed).png
