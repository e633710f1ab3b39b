"""Write small synthetic DICOM series with pydicom, for the cases real data lacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_SOP = "1.2.840.10008.5.1.4.1.1.4"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_MR_SOP = "1.2.840.10008.5.1.4.1.1.4.1"

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows along +L, columns along +P: normal +S

PHI = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042", "PatientBirthDate": "19600101"}


def _base(sop_class: str, *, modality: str, study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    for k, v in PHI.items():
        setattr(ds, k, v)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write_series(
    folder: Path,
    positions: Sequence[Sequence[float]],
    *,
    rows: int = 8,
    cols: int = 10,
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: tuple[float, float] = (0.8, 0.6),
    slice_thickness: float = 5.0,
    modality: str = "MR",
    description: str = "synthetic",
    series_uid: str | None = None,
    study_uid: str | None = None,
    echo: int | None = None,
    acquisition: int | None = None,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    pixels: np.ndarray | None = None,
    prefix: str = "im",
    series_number: int = 1,
) -> list[Path]:
    """One file per position. Pixel value at (slice k, row r, col c) = 100k + 10r + c by default."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    paths = []
    for k, pos in enumerate(positions):
        ds = _base(
            CT_SOP if modality == "CT" else MR_SOP,
            modality=modality,
            study_uid=study_uid,
            series_uid=series_uid,
        )
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.PixelSpacing = [f"{v}" for v in pixel_spacing]
        ds.SliceThickness = slice_thickness
        ds.Rows, ds.Columns = rows, cols
        if echo is not None:
            ds.EchoNumbers = echo
        if acquisition is not None:
            ds.AcquisitionNumber = acquisition
        if rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        if pixels is None:
            r, c = np.mgrid[0:rows, 0:cols]
            frame = (100 * k + 10 * r + c).astype(np.int16)
        else:
            frame = pixels[k].astype(np.int16)
        ds.PixelData = frame.tobytes()
        path = folder / f"{prefix}{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def axial_positions(n: int, *, spacing: float = 2.5, origin=(-10.0, 20.0, 30.0), shift=(0.0, 0.0)):
    """Positions of an axial stack; ``shift`` (mm per slice along L, P) makes a gantry tilt."""
    return [(origin[0] + shift[0] * k, origin[1] + shift[1] * k, origin[2] + spacing * k) for k in range(n)]


def write_enhanced(
    path: Path,
    positions: Sequence[Sequence[float]],
    *,
    rows: int = 6,
    cols: int = 7,
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: tuple[float, float] = (0.9, 0.7),
    rescale: tuple[float, float] = (2.0, -5.0),
    shuffle: Sequence[int] | None = None,
) -> np.ndarray:
    """An enhanced MR multi-frame file; frames stored in ``shuffle`` order. Returns raw pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(positions)
    order = list(shuffle) if shuffle is not None else list(range(n))
    ds = _base(
        ENHANCED_MR_SOP, modality="MR", study_uid="1.2.826.0.1.3680043.8.498.2", series_uid=generate_uid()
    )
    ds.SeriesDescription = "enhanced"
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, cols
    ds.NumberOfFrames = n
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = list(pixel_spacing)
    pm.SliceThickness = 1.0
    shared.PixelMeasuresSequence = DicomSequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = list(orientation)
    shared.PlaneOrientationSequence = DicomSequence([po])
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = rescale[0], rescale[1], "US"
    shared.PixelValueTransformationSequence = DicomSequence([pvt])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    raw = np.zeros((n, rows, cols), dtype=np.int16)
    for f, k in enumerate(order):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = list(positions[k])
        item.PlanePositionSequence = DicomSequence([pp])
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = k + 1
        item.FrameContentSequence = DicomSequence([fc])
        per_frame.append(item)
        r, c = np.mgrid[0:rows, 0:cols]
        raw[f] = 100 * k + 10 * r + c
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = raw.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return raw
