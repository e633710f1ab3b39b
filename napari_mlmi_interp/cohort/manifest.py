"""What a batch runs on: a folder of scans or a CSV manifest, turned into cases."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io.dicomweb.url import is_dicomweb_url, parse_url
from ..io.formats import IMAGE_SUFFIXES, image_suffix
from ..io.pseudonym import pseudonymize

__all__ = ["Case", "read_cases"]


@dataclass(frozen=True)
class Case:
    """One scan to explain.

    ``key`` names the case's output folder: a keyed hash of the input's resolved path, so a
    rerun finds its finished cases again and no file name (which may hold a patient's
    name) becomes a folder name.
    """

    key: str
    scan: Path | str  # a path, or a DICOMweb study/series URL (a str)
    roi: Path | None = None
    label: str | None = None

    @property
    def input(self) -> str:
        return str(self.scan)


def _case(scan: Path | str, roi: Path | None, label: str | None) -> Case:
    scan = str(parse_url(scan)) if isinstance(scan, str) else scan.resolve()
    return Case(pseudonymize("batch-input", str(scan)), scan, roi.resolve() if roi else None, label)


def _scan(folder: Path, text: str) -> Path | str:
    """A manifest's ``scan`` cell: a DICOMweb URL as it is, a path relative to the manifest."""
    return text if is_dicomweb_url(text) else folder / text


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _find_mask(masks: Path, scan: Path | str) -> Path | None:
    """``<stem>.<ext>``, ``<stem>_mask.<ext>``, ``<stem>_roi.<ext>`` or ``<stem>_seg.<ext>`` in ``masks``.

    A DICOMweb scan's stem is its last UID (the series', or the study's).
    """
    stem = str(scan).rstrip("/").rsplit("/", 1)[-1] if isinstance(scan, str) else _stem(scan)
    for name in (stem, f"{stem}_mask", f"{stem}_roi", f"{stem}_seg"):
        for suffix in IMAGE_SUFFIXES:
            candidate = masks / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def read_cases(source: str | os.PathLike[str], *, masks: str | os.PathLike[str] | None = None) -> list[Case]:
    """The cases of a batch.

    Parameters
    ----------
    source : path-like or str
        A folder: every image file (NIfTI, MHA/MHD, NRRD) in it, and every sub-folder (a
        DICOM series or study), is one case. Or a CSV manifest with a ``scan`` column and
        optional ``roi`` (a mask) and ``label`` columns; relative paths are relative to the CSV,
        and a ``scan`` may be a DICOMweb study or series URL. Or one DICOMweb study or series
        URL: one case.
    masks : path-like, optional
        A folder of ROI masks matched to scans by file name (``<stem>``, ``<stem>_mask``,
        ``<stem>_roi`` or ``<stem>_seg``); a manifest's ``roi`` column wins.
    """
    mask_dir = Path(masks) if masks else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: the masks folder does not exist")
    if is_dicomweb_url(source):
        scan = str(source)
        return [_case(scan, _find_mask(mask_dir, scan) if mask_dir is not None else None, None)]
    src = Path(source)
    cases: list[Case] = []
    if src.is_file() and src.suffix.lower() == ".csv":
        with src.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "scan" not in reader.fieldnames:
                raise InputError(f"{src}: a manifest needs a 'scan' column (and optionally 'roi', 'label')")
            for i, row in enumerate(reader, start=2):
                if not (row.get("scan") or "").strip():
                    raise InputError(f"{src}, line {i}: empty 'scan'")
                scan = _scan(src.parent, row["scan"].strip())
                roi = src.parent / row["roi"].strip() if (row.get("roi") or "").strip() else None
                if roi is None and mask_dir is not None:
                    roi = _find_mask(mask_dir, scan)
                cases.append(_case(scan, roi, (row.get("label") or "").strip() or None))
    elif src.is_dir():
        entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
        for p in entries:
            if p.is_dir() or image_suffix(p) is not None:
                roi = _find_mask(mask_dir, p) if mask_dir is not None else None
                cases.append(_case(p, roi, None))
    else:
        raise InputError(f"{src}: give a folder of scans or a CSV manifest")
    if not cases:
        raise InputError(f"{src}: no scans found (image files or DICOM folders)")
    keys = [c.key for c in cases]
    if len(set(keys)) != len(keys):
        raise InputError(f"{src}: the same scan is listed twice")
    return cases
