"""Attribution maps back into the source study, as DICOM.

For a map on a DICOM series' own grid, three objects, each a new series of the source study
(same Study Instance UID and Frame of Reference, referencing the source images):

- a **derived image series** of the source's SOP class (MR, CT, ...), one file per source
  slice: the source's geometry attributes, ``ImageType`` DERIVED\\SECONDARY, the map as 16-bit
  pixels with ``RescaleSlope``/``RescaleIntercept`` giving the attribution values, and a
  ``SourceImageSequence`` per slice. Written with pydicom, because viewers and toolkits read
  such series everywhere (SimpleITK/GDCM, most PACS viewers), while they do not read
  Parametric Maps: GDCM refuses the Parametric Map SOP class ("unable to determine ImageIO").
- a **Parametric Map** (highdicom), the standard object for a quantity map: the same values
  through a Real World Value Mapping, for tools that support it (3D Slicer with dcmqi, OHIF).
- a **Segmentation** (highdicom, binary): the top-k % region.

By default the objects carry **no patient identity**: the patient's name and ID become the
case pseudonym, the birth date and other identifying patient attributes are removed, private
tags are dropped; the Study Instance UID and Frame of Reference still tie them to the source
study. ``keep_identity=True`` (``batch --dicom-keep-identity``) copies the source's patient
module as is, for sites whose PACS files objects by patient ID: only when asked for.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlmiError
from ..io.volume import Volume
from ..metrics.regions import DEFAULT_TOPK_PERCENT, topk_mask

__all__ = ["ExportError", "export_dicom", "source_datasets"]


class ExportError(MlmiError, ValueError):
    """The map cannot be written as DICOM (no DICOM source, another grid, ...)."""


def source_datasets(volume: Volume) -> list[Any]:
    """The source DICOM datasets of ``volume``, one per slice, in the array's slice order."""
    import pydicom

    uids = list(volume.references.get("SOPInstanceUIDs") or [])
    if not uids:
        raise ExportError(
            f"'{volume.name}' was not read from a DICOM series slice by slice (or was resampled, e.g. "
            "for gantry tilt): DICOM export needs the source slices; write NIfTI instead"
        )
    if len(set(uids)) != volume.shape[0]:
        raise ExportError(
            f"'{volume.name}' comes from a multi-frame or repeated-instance source ({len(set(uids))} "
            f"instances for {volume.shape[0]} slices): DICOM export supports one file per slice"
        )
    wanted = set(uids)
    found: dict[str, Any] = {}
    root = Path(volume.source)
    folder = root.parent if root.is_file() else root
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:  # headers only: the pixels of the source are never needed
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in wanted:
            found[uid] = ds
    missing = wanted - set(found)
    if missing:
        raise ExportError(f"{root}: {len(missing)} source slices of '{volume.name}' are no longer there")
    return [found[u] for u in uids]


#: Patient attributes removed from exports (name and ID are replaced by the pseudonym; the
#: birth date, a type-2 attribute, is kept empty).
IDENTIFYING = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "PatientComments",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
)


def deidentified(datasets: list[Any], pseudonym: str) -> list[Any]:
    """Copies of ``datasets`` (headers) whose patient is ``pseudonym``; private tags dropped."""
    out = []
    for ds in datasets:
        ds = copy.deepcopy(ds)
        ds.remove_private_tags()
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        for keyword in IDENTIFYING:
            if keyword in ds:
                delattr(ds, keyword)
        ds.PatientBirthDate = ""  # type 2: present, empty
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "napari-mlmi-interp: name and ID pseudonymised, no birth date"  # LO: 64
        out.append(ds)
    return out


#: Type-2 attributes (present, may be empty) the derived objects need from their source.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
)


def _completed(datasets: list[Any]) -> list[Any]:
    """Copies with the type-2 attributes a source may lack added empty (highdicom needs them)."""
    out = []
    for ds in datasets:
        missing = [k for k in _TYPE2 if k not in ds]
        if missing:
            ds = copy.deepcopy(ds)
            for keyword in missing:
                setattr(ds, keyword, "")
        out.append(ds)
    return out


def _check_grid(amap: Volume, source: Volume) -> None:
    if not amap.geometry.same_grid(source.geometry, atol_mm=1e-3):
        raise ExportError("the map is not on the source series' grid: map it to the native grid first")


def _quantised(amap: Volume) -> tuple[np.ndarray, float, float, float]:
    """The map as uint16 with ``value = stored * slope + lo`` (one scale for the whole volume)."""
    values = np.asarray(amap.array, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    return np.round((values - lo) / slope).clip(0, 65535).astype(np.uint16), lo, hi, slope


def _derived_series(
    amap: Volume, sources: list[Any], folder: Path, description: str, number: int
) -> list[Path]:
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    stored, lo, hi, slope = _quantised(amap)
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, src in enumerate(sources):
        ds = copy.deepcopy(src)
        ds.remove_private_tags()
        for keyword in (
            "IconImageSequence",
            "LossyImageCompression",
            "LossyImageCompressionRatio",
            "LossyImageCompressionMethod",
            "VOILUTSequence",
            "ModalityLUTSequence",
        ):
            if keyword in ds:
                delattr(ds, keyword)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = number
        ds.SeriesDescription = description[:64]
        ds.ImageType = ["DERIVED", "SECONDARY", "ATTRIBUTION"]
        ds.DerivationDescription = f"{description} (napari-mlmi-interp)"[:1024]
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.SourceImageSequence = [ref]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{lo:.10g}"
        ds.RescaleType = "US"
        ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2:.6g}", f"{max(hi - lo, 1e-6):.6g}"
        ds.PixelData = stored[k].tobytes()
        ds["PixelData"].VR = "OW"
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _equipment() -> dict[str, Any]:
    from .. import __version__

    return {
        "manufacturer": "napari-mlmi-interp",
        "manufacturer_model_name": "napari-mlmi-interp",
        "software_versions": __version__,
        "device_serial_number": "none",
    }


def _parametric_map(amap: Volume, sources: list[Any], path: Path, description: str, number: int) -> Path:
    import highdicom as hd

    stored, lo, _hi, slope = _quantised(amap)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="attribution",
        lut_explanation=description[:64],
        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(0, 65535),
        slope=slope,
        intercept=lo,
    )
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=stored,
        series_instance_uid=hd.UID(),
        series_number=number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=32767.5, window_width=65536.0)],
        content_description=description[:64],
        content_label="ATTRIBUTION",
        **_equipment(),
    )
    pm.save_as(path)
    return path


def _segmentation(
    mask: np.ndarray, sources: list[Any], path: Path, label: str, method: str, number: int
) -> Path:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .. import __version__

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"napari-mlmi-interp {method}"[:64],
        version=__version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        omit_empty_frames=False,
        **_equipment(),
    )
    seg.save_as(path)
    return path


def export_dicom(
    amap: Volume,
    source: Volume,
    out: str | os.PathLike[str],
    *,
    method: str = "attribution",
    target: str = "",
    percent: float = DEFAULT_TOPK_PERCENT,
    series_number: int = 900,
    keep_identity: bool = False,
    sources: list[Any] | None = None,
) -> dict[str, Any]:
    """Write a native-grid map of a DICOM series as a derived series, a Parametric Map and a SEG.

    Parameters
    ----------
    amap : Volume
        The map on ``source``'s grid (``Explanation.native``).
    source : Volume
        The DICOM series it explains, as read by :func:`napari_mlmi_interp.io.load`.
    out : path-like
        Folder: ``<out>/derived/IM*.dcm``, ``<out>/parametric_map.dcm``, ``<out>/top_k_seg.dcm``.
    keep_identity : bool
        Copy the source's patient module (name, ID, birth date) instead of the pseudonym.
    sources : list of pydicom.Dataset, optional
        ``source_datasets(source)`` when already read (several maps of one scan).

    Raises
    ------
    ExportError
        No DICOM source slices, another grid, or a multi-frame source.
    """
    _check_grid(amap, source)
    sources = source_datasets(source) if sources is None else sources
    if not keep_identity:
        sources = deidentified(sources, source.case_id or "case-anonymous")
    sources = _completed(sources)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    description = f"{method} attribution" + (f" for {target}" if target else "")
    derived = _derived_series(amap, sources, out / "derived", description, series_number)
    pm = _parametric_map(amap, sources, out / "parametric_map.dcm", description, series_number + 1)
    mask = topk_mask(amap.array, percent)
    seg = _segmentation(
        mask, sources, out / "top_k_seg.dcm", f"top {percent:g} % {method}", method, series_number + 2
    )
    return {
        "derived_series": [str(p) for p in derived],
        "parametric_map": str(pm),
        "segmentation": str(seg),
        "study_instance_uid": str(sources[0].StudyInstanceUID),
        "top_k_voxels": int(mask.sum()),
        "identity": "source" if keep_identity else "pseudonymised",
    }
