"""DICOM series -> :class:`~napari_mlmi_interp.io.volume.Volume`.

How a folder becomes volumes:

1. every file's header is read with pydicom (no pixels); non-DICOM files are skipped;
2. every image *frame* (a classic single-frame file, or one frame of an enhanced
   multi-frame file) is described by its position, orientation, pixel spacing and
   rescale;
3. frames are grouped into consistent stacks: same series, echo, image type, matrix,
   pixel spacing, orientation (within 0.06 degrees) and, for enhanced files, stack id;
4. each stack is sorted by position along the slice normal; the slice spacing comes
   from ``ImagePositionPatient`` (never ``SliceThickness``); duplicates at every
   position are split into repeats, missing slices and irregular spacing are refused
   with the numbers, a gantry tilt is resampled onto an orthogonal grid;
5. pixel data is decoded by pydicom (with the pylibjpeg plugins for JPEG, JPEG-LS and
   JPEG 2000; RLE and deflate natively) and the modality rescale applied (HU for CT).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LoadError, LoadWarning
from .formats import check_memory
from .pseudonym import pseudonymize
from .volume import Geometry, Volume

__all__ = ["find_dicom_files", "is_dicom_file", "read_dicom", "series_tag"]

# Orientation cosines closer than this (max abs difference) belong to one stack (~0.06 deg).
_ORIENT_TOL = 1e-3
# Two frames closer than this along the normal share a position (mm).
_SAME_POSITION_MM = 0.01
# Maximum number of files looked at in one folder (a guard against scanning a disk).
_MAX_FILES = 100_000

_SAFE_TAGS = (
    "SeriesDescription",
    "ProtocolName",
    "SeriesNumber",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "BodyPartExamined",
    "KVP",
    "ConvolutionKernel",
    "SliceThickness",
    "ContrastBolusAgent",
    "ScanningSequence",
    "SequenceName",
)


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """Cheap check: a Part 10 file (``DICM`` at byte 128). Never raises."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def find_dicom_files(folder: Path, *, recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """Split the files under ``folder`` into (DICOM Part 10 files, other files)."""
    found: list[Path] = []
    other: list[Path] = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, files in walker:
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            p = Path(root) / name
            if not p.is_file():
                continue
            (found if is_dicom_file(p) else other).append(p)
            if len(found) + len(other) > _MAX_FILES:
                raise LoadError(f"more than {_MAX_FILES} files; open a single study folder", folder)
    return found, other


@dataclass
class _Frame:
    path: Path
    frame: int | None  # index within a multi-frame file, None for single-frame
    rows: int
    cols: int
    position: np.ndarray | None  # ImagePositionPatient (LPS mm)
    row_cos: np.ndarray | None  # direction of increasing column index (x)
    col_cos: np.ndarray | None  # direction of increasing row index (y)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None
    echo: Any = None
    stack_id: Any = None
    instance: int = 0
    uid: str = ""
    order_keys: tuple = ()
    series: dict[str, Any] = field(default_factory=dict)


def _first(value: Any) -> Any:
    if value is None:
        return None
    try:
        from pydicom.multival import MultiValue

        if isinstance(value, (MultiValue, list, tuple)):
            return value[0] if len(value) else None
    except ImportError:  # pragma: no cover
        pass
    return value


def _float(value: Any, default: float | None = None) -> float | None:
    value = _first(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _vec(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _seq_item(ds: Any, name: str) -> Any:
    seq = getattr(ds, name, None)
    return seq[0] if seq else None


def _fg_value(groups: list[Any], seq_name: str, attr: str) -> Any:
    """First value of ``attr`` inside ``seq_name`` over per-frame then shared groups."""
    for group in groups:
        if group is None:
            continue
        item = _seq_item(group, seq_name)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _series_facts(ds: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for tag in _SAFE_TAGS:
        v = ds.get(tag)
        if v is None or v == "":
            continue
        facts[tag] = float(v) if isinstance(v, float) else (str(v) if not isinstance(v, int) else v)
    it = ds.get("ImageType")
    facts["ImageType"] = "\\".join(str(x) for x in it) if it else ""
    facts["Modality"] = str(ds.get("Modality", "OT") or "OT")
    facts["SeriesInstanceUID"] = str(ds.get("SeriesInstanceUID", ""))
    facts["StudyInstanceUID"] = str(ds.get("StudyInstanceUID", ""))
    facts["FrameOfReferenceUID"] = str(ds.get("FrameOfReferenceUID", ""))
    facts["PhotometricInterpretation"] = str(ds.get("PhotometricInterpretation", ""))
    facts["SamplesPerPixel"] = int(ds.get("SamplesPerPixel", 1) or 1)
    facts["BitsAllocated"] = int(ds.get("BitsAllocated", 16) or 16)
    try:
        facts["TransferSyntax"] = ds.file_meta.TransferSyntaxUID.name
    except AttributeError:
        facts["TransferSyntax"] = ""
    return facts


def _frames_of(path: Path, ds: Any) -> list[_Frame]:
    """Describe every image frame held by one dataset."""
    # stop_before_pixels hides PixelData; Rows/Columns tell an image from SR/PR objects
    if "Rows" not in ds or "Columns" not in ds:
        return []
    series = _series_facts(ds)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        return []
    nframes = int(_float(ds.get("NumberOfFrames"), 1) or 1)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    window_c, window_w = _float(ds.get("WindowCenter")), _float(ds.get("WindowWidth"))
    base_window = (window_c, window_w) if window_c is not None and window_w else None
    frames = []
    for f in range(nframes):
        if per_frame is not None or shared is not None:
            groups = [per_frame[f] if per_frame is not None and f < len(per_frame) else None, shared]
            pos = _vec(_fg_value(groups, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
            iop = _vec(_fg_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient") or [], 6)
            ps = _vec(_fg_value(groups, "PixelMeasuresSequence", "PixelSpacing") or [], 2)
            slope = _float(_fg_value(groups, "PixelValueTransformationSequence", "RescaleSlope"), None)
            intercept = _float(
                _fg_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"), None
            )
            wc = _float(_fg_value(groups, "FrameVOILUTSequence", "WindowCenter"))
            ww = _float(_fg_value(groups, "FrameVOILUTSequence", "WindowWidth"))
            echo = _float(_fg_value(groups, "MREchoSequence", "EffectiveEchoTime"))
            stack_id = _fg_value(groups, "FrameContentSequence", "StackID")
            temporal = _fg_value(groups, "FrameContentSequence", "TemporalPositionIndex")
            in_stack = _fg_value(groups, "FrameContentSequence", "InStackPositionNumber")
            window = (wc, ww) if wc is not None and ww else base_window
            order = (_float(temporal, 0.0), _float(in_stack, 0.0), f)
        else:
            pos = _vec(ds.get("ImagePositionPatient") or [], 3)
            iop = _vec(ds.get("ImageOrientationPatient") or [], 6)
            ps = _vec(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [], 2)
            slope, intercept, window = None, None, base_window
            echo = _first(ds.get("EchoNumbers"))
            stack_id = None
            order = (
                _float(ds.get("TemporalPositionIdentifier"), 0.0),
                _float(ds.get("TriggerTime"), 0.0),
                _float(ds.get("AcquisitionNumber"), 0.0),
                str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "")),
                _float(ds.get("InstanceNumber"), 0.0),
            )
        if slope is None:
            slope = _float(ds.get("RescaleSlope"), 1.0)
        if intercept is None:
            intercept = _float(ds.get("RescaleIntercept"), 0.0)
        row_cos = col_cos = None
        if iop is not None:
            row_cos, col_cos = iop[:3], iop[3:]
            with np.errstate(over="ignore", invalid="ignore"):
                nr, nc = np.linalg.norm(row_cos), np.linalg.norm(col_cos)
                skew = abs(np.dot(row_cos, col_cos))
            if (
                not (np.isfinite(nr) and np.isfinite(nc) and np.isfinite(skew))
                or nr < 1e-6
                or nc < 1e-6
                or skew > 1e-3 * nr * nc
            ):
                row_cos = col_cos = None  # degenerate orientation: treated as no geometry
            else:
                row_cos, col_cos = row_cos / nr, col_cos / nc
        spacing = (float(ps[0]), float(ps[1])) if ps is not None and np.all(ps > 0) else (1.0, 1.0)
        frames.append(
            _Frame(
                path=path,
                frame=f if nframes > 1 or per_frame is not None else None,
                rows=rows,
                cols=cols,
                position=pos,
                row_cos=row_cos,
                col_cos=col_cos,
                pixel_spacing=spacing,
                slope=float(slope if slope not in (None, 0) else 1.0),
                intercept=float(intercept or 0.0),
                window=window,
                echo=echo,
                stack_id=stack_id,
                instance=int(_float(ds.get("InstanceNumber"), 0) or 0),
                uid=str(ds.get("SOPInstanceUID", path.name)),
                order_keys=order,
                series=series,
            )
        )
    return frames


def _scan(files: list[Path]) -> tuple[list[_Frame], list[str]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    frames: list[_Frame] = []
    problems: list[str] = []
    seen: set[tuple[str, Any]] = set()
    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except InvalidDicomError:
            problems.append(f"{p.name}: not a DICOM file")
            continue
        except Exception as exc:  # pydicom raises many types on damaged headers
            problems.append(f"{p.name}: unreadable DICOM header ({type(exc).__name__}: {exc})")
            continue
        try:
            new = _frames_of(p, ds)
        except Exception as exc:
            problems.append(f"{p.name}: inconsistent DICOM header ({type(exc).__name__}: {exc})")
            continue
        if not new:
            sop = str(ds.get("SOPClassUID", "")) or "unknown SOP class"
            problems.append(f"{p.name}: holds no image (no Rows/Columns; {sop}; a truncated header?)")
        for fr in new:
            key = (fr.uid, fr.frame)
            if key in seen:  # the same instance stored twice (copied file)
                continue
            seen.add(key)
            frames.append(fr)
    return frames, problems


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


def _decode(frames: list[_Frame]) -> np.ndarray:
    """Pixel values of ``frames`` as a (n, rows, cols) array with the rescale applied."""
    import pydicom

    rows, cols = frames[0].rows, frames[0].cols
    rescaled = any(fr.slope != 1.0 or fr.intercept != round(fr.intercept) for fr in frames)
    # integers (the common case) accumulate in int64 only for 32-bit pixels, else int32
    wide = int(frames[0].series.get("BitsAllocated", 16) or 16) > 16
    out = np.empty(
        (len(frames), rows, cols), dtype=np.float32 if rescaled else (np.int64 if wide else np.int32)
    )
    cache: dict[Path, np.ndarray] = {}
    for i, fr in enumerate(frames):
        try:
            if fr.frame is None:
                pixels = pydicom.dcmread(fr.path).pixel_array
            else:
                if fr.path not in cache:
                    cache.clear()
                    cache[fr.path] = pydicom.dcmread(fr.path).pixel_array
                pixels = cache[fr.path]
                pixels = pixels[fr.frame] if pixels.ndim == 3 else pixels
        except Exception as exc:
            raise LoadError(f"pixel data cannot be decoded: {_short(exc)}", fr.path) from None
        if pixels.shape != (rows, cols):
            raise LoadError(f"pixel data has shape {pixels.shape}, the header says {rows}x{cols}", fr.path)
        if rescaled:
            out[i] = pixels * fr.slope + fr.intercept
        else:
            out[i] = pixels.astype(out.dtype) + round(fr.intercept)
    if rescaled:
        return out
    lo, hi = (out.min(), out.max()) if out.size else (0, 0)
    for dtype in (np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return out.astype(dtype)
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


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


def _volume_from_stack(
    frames: list[_Frame], label: str, path: Path, notes: list[str], *, tag: str = ""
) -> Volume:
    fr0 = frames[0]
    series = fr0.series
    if series["SamplesPerPixel"] != 1:
        raise LoadError(
            f"colour images are not supported ({series['SamplesPerPixel']} samples per pixel)", fr0.path
        )
    check_memory(len(frames) * fr0.rows * fr0.cols * 8, path, what="series")
    notes = list(notes)
    sheared = None
    if fr0.row_cos is None or any(fr.position is None for fr in frames):
        frames = sorted(frames, key=lambda fr: (fr.instance, fr.order_keys))
        geometry = Geometry(
            (len(frames), fr0.rows, fr0.cols), (1.0, *fr0.pixel_spacing), (0.0, 0.0, 0.0), np.eye(3)
        )
        notes.append(
            "no patient geometry (ImagePositionPatient/ImageOrientationPatient missing): "
            "slices ordered by instance number, 1 mm between slices, origin at 0"
        )
    else:
        geometry, geo_notes, sheared = _stack_geometry(frames, path)
        notes.extend(geo_notes)
    array = _decode(frames)
    if sheared is not None:
        array, geometry = _untilt(array, geometry, sheared)
    modality = series["Modality"]
    windows = [fr.window for fr in frames if fr.window]
    internal = ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID", "BitsAllocated")
    meta = {k: v for k, v in series.items() if k not in internal}
    meta["files"] = len({fr.path for fr in frames})
    if fr0.echo is not None:
        meta["EchoNumber"] = fr0.echo
    if series["PhotometricInterpretation"] == "MONOCHROME1":
        notes.append("MONOCHROME1: low values are displayed white")
    return Volume(
        array=array,
        geometry=geometry,
        name=label,
        modality=modality,
        case_id=pseudonymize(series["StudyInstanceUID"], series["SeriesInstanceUID"], label),
        window=windows[len(windows) // 2] if windows else None,
        units="HU" if modality == "CT" else "",
        source=str(path),
        # each note names its series, so the same words from two series stay two warnings
        warnings=[f"{tag}: {n}" if tag else n for n in notes],
        metadata=meta,
        references={
            "StudyInstanceUID": series["StudyInstanceUID"],
            "SeriesInstanceUID": series["SeriesInstanceUID"],
            "FrameOfReferenceUID": series["FrameOfReferenceUID"],
            "SOPInstanceUIDs": [fr.uid for fr in frames] if sheared is None else [],
        },
    )


def read_dicom(path: str | os.PathLike[str]) -> list[Volume]:
    """Every series under a folder (or beside a DICOM file) as volumes.

    Parameters
    ----------
    path : path-like
        A folder (searched recursively) or any DICOM file inside one (its folder's
        files are read).

    Returns
    -------
    list of Volume
        One per consistent stack, in series-number order.

    Raises
    ------
    LoadError
        When no volume can be formed; the message lists each stack's problem.
        Stacks that fail while others succeed are reported as :class:`LoadWarning`
        and, with the count of skipped non-DICOM files, once per folder in the first
        volume's ``warnings``.

    Notes
    -----
    A note about one series (a gantry tilt resampled, repeats split, orientations split)
    is in the ``warnings`` of each volume it concerns and starts with the series' tag
    (``series 4 'T1 MPRAGE': ...``); :func:`~napari_mlmi_interp.io.load_warnings` lists
    every warning of a load once.
    """
    path = Path(path)
    if path.is_file():
        if not is_dicom_file(path):
            size = path.stat().st_size
            what = "the file is empty (0 bytes)" if size == 0 else "no DICOM marker ('DICM' at byte 128)"
            raise LoadError(f"not a DICOM file: {what}", path)
        files, other = find_dicom_files(path.parent, recursive=False)
    elif path.is_dir():
        files, other = find_dicom_files(path)
    else:
        raise LoadError("no such file or folder", path)
    if not files:
        n = len(other)
        detail = f"{n} file{'s' if n != 1 else ''}, none of them DICOM" if other else "the folder is empty"
        raise LoadError(f"no DICOM images found ({detail})", path)

    frames, problems = _scan(files)
    if other:
        problems.insert(0, f"{len(other)} non-DICOM file{'s' if len(other) != 1 else ''} skipped")
    stacks = _group(frames)
    labels = _stack_labels(stacks)
    volumes: list[Volume] = []
    failures: list[str] = []

    def series_order(item: tuple[tuple, list[_Frame]]) -> tuple:
        return (_float(item[1][0].series.get("SeriesNumber"), 0), labels[item[0]])

    # how many orientation stacks each series was split into (key[10] is the orientation index)
    orientations: dict[str, set[int]] = defaultdict(set)
    for key in stacks:
        orientations[key[0]].add(key[10])

    for key, members in sorted(stacks.items(), key=series_order):
        label = labels[key]
        tag = series_tag(members[0].series)
        who = tag if f"'{label}'" in tag else f"{tag} ('{label}')"
        split = len(orientations[key[0]])
        try:
            if members[0].row_cos is not None and all(fr.position is not None for fr in members):
                normal = np.cross(members[0].row_cos, members[0].col_cos)
                normal /= np.linalg.norm(normal)
                parts = _sort_stack(members, normal)
            else:
                parts = [members]
            for k, part in enumerate(parts):
                name = label if len(parts) == 1 else f"{label} (repeat {k + 1} of {len(parts)})"
                notes = []
                if split > 1:
                    notes.append(
                        f"holds {split} slice orientations: split into {split} volumes, one per orientation"
                    )
                if len(parts) > 1:
                    notes.append(
                        f"{len(parts)} slices at every position: split into {len(parts)} volumes by "
                        "temporal position / acquisition number / time"
                    )
                volumes.append(_volume_from_stack(part, name, path, notes, tag=tag))
        except LoadError as exc:
            where = f"{Path(exc.path).name}: " if exc.path and exc.path != str(path) else ""
            failures.append(f"{who}: {where}{exc.reason}")
        except (ValueError, ArithmeticError) as exc:  # geometry no grid can hold (found by fuzzing)
            failures.append(f"{who}: unusable geometry ({exc})")
    if not volumes:
        if not failures and problems:
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise LoadError(f"no DICOM images could be read ({'; '.join(problems[:3])}{more})", path)
        raise LoadError("; ".join(failures) if failures else "no image frames found", path)
    skipped = [f"{f} - skipped" for f in failures] + problems
    for msg in skipped:
        warnings.warn(f"{path}: {msg}", LoadWarning, stacklevel=2)
    # notes on the folder, not on one series: said once, with the first volume
    volumes[0].warnings.extend(skipped)
    return volumes
