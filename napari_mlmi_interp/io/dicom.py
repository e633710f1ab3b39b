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

Steps 1 and 5 and the assembly of volumes are here; step 2 is :mod:`.dicom_frames`, steps 3
and 4 are :mod:`.dicom_stacks`.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .dicom_frames import _float, _Frame, _frames_of
from .dicom_stacks import _group, _sort_stack, _stack_geometry, _stack_labels, _untilt, series_tag
from .errors import LoadError, LoadWarning
from .formats import check_memory
from .pseudonym import pseudonymize
from .volume import Geometry, Volume

__all__ = ["find_dicom_files", "is_dicom_file", "read_dicom", "series_tag"]

# Maximum number of files looked at in one folder (a guard against scanning a disk).
_MAX_FILES = 100_000


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
            "SOPClassUID": series["SOPClassUID"],
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
    files, other = _dicom_files(path)
    frames, problems = _scan(files)
    if other:
        problems.insert(0, f"{len(other)} non-DICOM file{'s' if len(other) != 1 else ''} skipped")
    volumes, failures = _volumes(_group(frames), path)
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


def _dicom_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The DICOM files of ``path`` (a folder, or the folder of a DICOM file) and the other files."""
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
    return files, other


def _volumes(stacks: dict[tuple, list[_Frame]], path: Path) -> tuple[list[Volume], list[str]]:
    """Every stack's volumes, in series-number order, and why the stacks that failed did."""
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
        try:
            # appended one by one: a repeat that fails keeps the repeats read before it
            for volume in _stack_volumes(members, label, path, tag, len(orientations[key[0]])):
                volumes.append(volume)
        except LoadError as exc:
            where = f"{Path(exc.path).name}: " if exc.path and exc.path != str(path) else ""
            failures.append(f"{who}: {where}{exc.reason}")
        except (ValueError, ArithmeticError) as exc:  # geometry no grid can hold (found by fuzzing)
            failures.append(f"{who}: unusable geometry ({exc})")
    return volumes, failures


def _stack_volumes(members: list[_Frame], label: str, path: Path, tag: str, split: int) -> Iterator[Volume]:
    """One stack's volumes: one, or one per repeat when every position holds as many slices."""
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
            notes.append(f"holds {split} slice orientations: split into {split} volumes, one per orientation")
        if len(parts) > 1:
            notes.append(
                f"{len(parts)} slices at every position: split into {len(parts)} volumes by "
                "temporal position / acquisition number / time"
            )
        yield _volume_from_stack(part, name, path, notes, tag=tag)
