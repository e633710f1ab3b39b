"""Frames -> stacks: grouping into consistent stacks, naming them, sorting along the slice
normal (repeats split), the stack's geometry (missing slices and irregular spacing refused with
the numbers) and the resampling of a gantry tilt onto an orthogonal grid.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .dicom_frames import _float, _Frame
from .errors import LoadError
from .formats import check_memory
from .volume import Geometry

__all__ = ["series_tag"]

# Orientation cosines closer than this (max abs difference) belong to one stack (~0.06 deg).
_ORIENT_TOL = 1e-3
# Two frames closer than this along the normal share a position (mm).
_SAME_POSITION_MM = 0.01


def _group(frames: list[_Frame]) -> dict[tuple, list[_Frame]]:
    """Split frames into stacks that can form one regular volume."""
    coarse: dict[tuple, list[_Frame]] = defaultdict(list)
    for fr in frames:
        s = fr.series
        coarse[
            (
                s["SeriesInstanceUID"],
                str(fr.echo) if fr.echo is not None else "",
                s["ImageType"],
                fr.rows,
                fr.cols,
                round(fr.pixel_spacing[0], 4),
                round(fr.pixel_spacing[1], 4),
                str(fr.stack_id) if fr.stack_id is not None else "",
                fr.row_cos is None or fr.position is None,
                s["SamplesPerPixel"],
            )
        ].append(fr)
    stacks: dict[tuple, list[_Frame]] = {}
    for key, members in coarse.items():
        # orientation clusters within tolerance (rounding would split near a boundary)
        reps: list[np.ndarray] = []
        clusters: list[list[_Frame]] = []
        for fr in members:
            iop = np.zeros(6) if fr.row_cos is None else np.concatenate([fr.row_cos, fr.col_cos])
            for i, rep in enumerate(reps):
                if np.abs(rep - iop).max() <= _ORIENT_TOL:
                    clusters[i].append(fr)
                    break
            else:
                reps.append(iop)
                clusters.append([fr])
        for i, cluster in enumerate(clusters):
            stacks[(*key, i)] = cluster
    return stacks


def _stack_labels(stacks: dict[tuple, list[_Frame]]) -> dict[tuple, str]:
    """Readable names; a suffix only for what varies within one series."""
    by_series: dict[str, list[tuple]] = defaultdict(list)
    for key in stacks:
        by_series[key[0]].append(key)
    labels: dict[tuple, str] = {}
    for keys in by_series.values():
        first = stacks[keys[0]][0].series
        base = str(
            first.get("SeriesDescription")
            or first.get("ProtocolName")
            or f"series {first.get('SeriesNumber', '?')}"
        ).strip()
        varying = [i for i in range(1, 11) if len({k[i] for k in keys}) > 1]
        for key in keys:
            parts = []
            for i in varying:
                if i == 1:
                    parts.append(f"echo {key[1]}")
                elif i == 2:
                    parts.append(key[2].replace("\\", "/").lower() or "no image type")
                elif i == 7:
                    parts.append(f"stack {key[7]}")
                elif i == 10:
                    parts.append(f"orientation {key[10] + 1}")
                elif i in (3, 4, 5, 6):
                    parts.append(f"{key[3]}x{key[4]}")
            labels[key] = f"{base} ({', '.join(dict.fromkeys(parts))})" if parts else base
    return labels


def series_tag(series: dict[str, Any]) -> str:
    """How a warning names its series: ``series 4 'T1 MPRAGE'`` (number and description)."""
    number = series.get("SeriesNumber")
    desc = str(series.get("SeriesDescription") or series.get("ProtocolName") or "").strip()
    if number is None:
        return f"series '{desc}'" if desc else "a series without number or description"
    return f"series {number} '{desc}'" if desc else f"series {number}"


def _sort_stack(frames: list[_Frame], normal: np.ndarray) -> list[list[_Frame]]:
    """Sort by position along ``normal``; split repeats when every position has as many."""
    frames = sorted(frames, key=lambda fr: (float(fr.position @ normal), fr.order_keys))
    groups: list[list[_Frame]] = []
    for fr in frames:
        z = float(fr.position @ normal)
        if groups and abs(z - float(groups[-1][0].position @ normal)) <= _SAME_POSITION_MM:
            groups[-1].append(fr)
        else:
            groups.append([fr])
    counts = {len(g) for g in groups}
    if counts == {1}:
        return [frames]
    if len(counts) == 1:
        m = counts.pop()
        for g in groups:
            g.sort(key=lambda fr: fr.order_keys)
        return [[g[k] for g in groups] for k in range(m)]
    dup = [g for g in groups if len(g) > 1]
    z = float(dup[0][0].position @ normal)
    raise LoadError(
        f"duplicate slice positions: {len(dup)} of {len(groups)} positions hold more than one "
        f"slice (e.g. {len(dup[0])} slices at {z:.2f} mm along the slice normal), and not every "
        "position has the same number, so they cannot be split into repeats"
    )


def _stack_geometry(frames: list[_Frame], path: Path) -> tuple[Geometry, list[str], np.ndarray | None]:
    """Geometry of a sorted stack; returns a tilt matrix to resample with when tilted."""
    fr0 = frames[0]
    row_cos, col_cos = fr0.row_cos, fr0.col_cos
    normal = np.cross(row_cos, col_cos)
    normal /= np.linalg.norm(normal)
    dy, dx = fr0.pixel_spacing
    notes: list[str] = []
    n = len(frames)
    positions = np.array([fr.position for fr in frames])
    if n == 1:
        thickness = _float(fr0.series.get("SliceThickness"), None) or 1.0
        direction = np.column_stack([normal, col_cos, row_cos])
        return Geometry((1, fr0.rows, fr0.cols), (thickness, dy, dx), positions[0], direction), notes, None

    z = positions @ normal
    steps = np.diff(z)
    step = (z[-1] - z[0]) / (n - 1)
    median = float(np.median(steps))
    tol = max(0.005, min(0.05 * median, 0.1))
    residual = np.abs(z - (z[0] + step * np.arange(n)))
    if residual.max() > tol:
        big = np.flatnonzero(steps > 1.5 * median)
        if big.size:
            i = int(big[0])
            missing = round(float(steps[i]) / median) - 1
            raise LoadError(
                f"missing slice: a gap of {steps[i]:.2f} mm between slices at {z[i]:.2f} and "
                f"{z[i + 1]:.2f} mm along the slice normal, where the spacing is {median:.2f} mm "
                f"(about {missing} slice{'s' if missing != 1 else ''} missing; "
                f"{big.size} gap{'s' if big.size != 1 else ''} in all)",
                path,
            )
        raise LoadError(
            f"irregular slice spacing: steps between slices range from {steps.min():.3f} to "
            f"{steps.max():.3f} mm along the slice normal",
            path,
        )

    stride = (positions[-1] - positions[0]) / (n - 1)  # LPS mm per slice
    lateral = stride - step * normal
    in_line = np.linalg.norm(positions - (positions[0] + np.outer(np.arange(n), stride)), axis=1)
    if in_line.max() > max(tol, 0.01 * min(dx, dy)):
        raise LoadError(
            f"slice positions do not lie on a line: a slice is {in_line.max():.2f} mm off the "
            "line through the first and last slice",
            path,
        )
    direction = np.column_stack([normal, col_cos, row_cos])
    if np.linalg.norm(lateral) * (n - 1) <= 0.01 * min(dx, dy):
        return Geometry((n, fr0.rows, fr0.cols), (step, dy, dx), positions[0], direction), notes, None

    tilt = math.degrees(math.atan2(np.linalg.norm(lateral), step))
    notes.append(
        f"gantry tilt of {tilt:.2f} degrees corrected by resampling onto an orthogonal grid "
        f"(slices shift {np.linalg.norm(lateral):.3f} mm in-plane per {step:.3f} mm step)"
    )
    # true index->LPS (columns in array order z, y, x): sheared along the slice axis
    sheared = np.column_stack([stride, col_cos * dy, row_cos * dx])
    return (
        Geometry((n, fr0.rows, fr0.cols), (step, dy, dx), positions[0], direction),
        notes,
        sheared,
    )


def _untilt(array: np.ndarray, geometry: Geometry, sheared: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """Resample a sheared (tilted) stack onto an orthogonal grid covering it."""
    import SimpleITK as sitk

    from .formats import to_sitk

    origin = np.asarray(geometry.origin)
    straight = geometry.direction * np.asarray(geometry.spacing)[None, :]
    # corners of the true (sheared) volume, in the orthogonal frame's index units
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in geometry.shape], indexing="ij")).reshape(3, -1).T
    true_pts = corners @ sheared.T
    idx = true_pts @ np.linalg.inv(straight).T
    lo, hi = np.floor(idx.min(axis=0) + 1e-6), np.ceil(idx.max(axis=0) - 1e-6)
    shape = tuple(int(h - low) + 1 for low, h in zip(lo, hi, strict=True))
    out_geom = Geometry(shape, geometry.spacing, origin + straight @ lo, geometry.direction)
    check_memory(int(np.prod(shape)) * 4, "resampled volume")

    src = to_sitk(array.astype(np.float32), geometry)  # stored as if untilted
    ref = to_sitk(np.zeros(shape, dtype=np.float32), out_geom)
    # output point q -> index in the sheared stack -> where that index sits in `src`
    a = straight @ np.linalg.inv(sheared)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(a.ravel()))
    transform.SetCenter(tuple(origin))
    background = float(array.min())
    out = sitk.Resample(src, ref, transform, sitk.sitkLinear, background, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out), out_geom
