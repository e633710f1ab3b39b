"""DICOM headers -> frames: every image frame with its position, orientation, spacing, rescale.

A classic single-frame file holds one frame; an enhanced multi-frame file holds many, each
described by its per-frame and shared functional groups. :func:`_frames_of` reads either
into the same :class:`_Frame` records, which :mod:`.dicom_stacks` groups into volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__: list[str] = []  # the package's DICOM reader is :func:`~.dicom.read_dicom`

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
    facts["SOPClassUID"] = str(ds.get("SOPClassUID", ""))
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
            fields = _enhanced_fields(groups, f, base_window)
        else:
            fields = _classic_fields(ds, base_window)
        pos, iop, ps, slope, intercept, window, echo, stack_id, order = fields
        if slope is None:
            slope = _float(ds.get("RescaleSlope"), 1.0)
        if intercept is None:
            intercept = _float(ds.get("RescaleIntercept"), 0.0)
        row_cos, col_cos = _orientation(iop)
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


def _enhanced_fields(groups: list[Any], f: int, base_window: tuple | None) -> tuple:
    """Frame ``f`` of an enhanced file, from its per-frame and the shared functional groups.

    Returns position, orientation, pixel spacing, slope, intercept (None when the groups
    do not say: the dataset's own then apply), window, echo, stack id and sort keys.
    """
    pos = _vec(_fg_value(groups, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
    iop = _vec(_fg_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient") or [], 6)
    ps = _vec(_fg_value(groups, "PixelMeasuresSequence", "PixelSpacing") or [], 2)
    slope = _float(_fg_value(groups, "PixelValueTransformationSequence", "RescaleSlope"), None)
    intercept = _float(_fg_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"), None)
    wc = _float(_fg_value(groups, "FrameVOILUTSequence", "WindowCenter"))
    ww = _float(_fg_value(groups, "FrameVOILUTSequence", "WindowWidth"))
    echo = _float(_fg_value(groups, "MREchoSequence", "EffectiveEchoTime"))
    stack_id = _fg_value(groups, "FrameContentSequence", "StackID")
    temporal = _fg_value(groups, "FrameContentSequence", "TemporalPositionIndex")
    in_stack = _fg_value(groups, "FrameContentSequence", "InStackPositionNumber")
    window = (wc, ww) if wc is not None and ww else base_window
    order = (_float(temporal, 0.0), _float(in_stack, 0.0), f)
    return pos, iop, ps, slope, intercept, window, echo, stack_id, order


def _classic_fields(ds: Any, base_window: tuple | None) -> tuple:
    """The one frame of a classic single-frame file (same fields as :func:`_enhanced_fields`)."""
    pos = _vec(ds.get("ImagePositionPatient") or [], 3)
    iop = _vec(ds.get("ImageOrientationPatient") or [], 6)
    ps = _vec(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [], 2)
    order = (
        _float(ds.get("TemporalPositionIdentifier"), 0.0),
        _float(ds.get("TriggerTime"), 0.0),
        _float(ds.get("AcquisitionNumber"), 0.0),
        str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "")),
        _float(ds.get("InstanceNumber"), 0.0),
    )
    return pos, iop, ps, None, None, base_window, _first(ds.get("EchoNumbers")), None, order


def _orientation(iop: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Unit row and column direction cosines; ``(None, None)`` when missing or degenerate."""
    if iop is None:
        return None, None
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
        return None, None  # degenerate orientation: treated as no geometry
    return row_cos / nr, col_cos / nc
