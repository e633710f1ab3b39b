"""Ratings into the hospital's systems: one DICOM Structured Report per rated run and reader.

``mlmi-interp ratings export DB --sr OUT_DIR`` writes, with highdicom, a Comprehensive 3D SR
holding a TID 1500 *Measurement Report*:

- the **reader** is the person observer (TID 1002) and this package the device observer;
- one **measurement group** (TID 1501) per run, tracked as ``<model> · <method> · <target>``,
  with the model as the algorithm (name, SHA-256 prefix as version) and the attribution
  method as the measurement method;
- each element's current **rating** is a qualitative evaluation (CODE): the element, coded
  in this package's private scheme ``99MLMI``, valued ``<n> of 5`` or SNOMED CT *Not applicable*;
  the reader's note on it is a TEXT item with the same concept name; the reader's **action** is
  one more qualitative evaluation;
- the **source series** is referenced by its Study, Series and SOP Instance UIDs (the SR's
  evidence; the SR is a new series of the source study). The study file keeps no UIDs (a
  case is a salted pseudonym): the source DICOM is read again (``--dicom``) and each rated
  case found by its pseudonym, computed with the same salt.

Like the DICOM map exports, the reports carry **no patient identity** by default: patient name
and ID are the case pseudonym, birth date and sex are empty; the UIDs are retained (that is
how the report finds its images). ``keep_identity`` copies the source's patient and study
attributes instead, for a PACS that files objects by patient ID: only when asked for. Runs
whose scan is not among the DICOM given get no report (an SR must reference images); the
result says how many. Notes are copied verbatim: readers should write no identifiers in them.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlmiError
from ..store import StudyStore
from ..vocabulary import ELEMENTS

__all__ = ["SCHEME", "SrExport", "element_code", "write_structured_reports"]

#: This package's private coding scheme (DICOM PS3.16 8.2: private designators start with 99).
SCHEME = "99MLMI"
_ELEMENT_CODES = {
    "localization": "LOC",
    "visual_recognizability": "VISREC",
    "physical_attribution": "PHYSATTR",
    "model_transparency": "TRANSP",
    "actionability": "ACTION",
}
_ACTION_CODES = {"accept": "ACCEPT", "override": "OVERRIDE", "refer": "REFER", "flag_shortcut": "SHORTCUT"}
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


class SrError(MlmiError, ValueError):
    """The ratings cannot be written as Structured Reports."""


def element_code(element: str) -> Any:
    """The coded concept of an element of interpretability (private scheme ``99MLMI``)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(_ELEMENT_CODES[element], SCHEME, f"{element.replace('_', ' ').capitalize()} rating")


@dataclass
class SrExport:
    """What :func:`write_structured_reports` wrote."""

    files: list[Path] = field(default_factory=list)
    not_dicom: int = 0

    def summary(self) -> str:
        text = f"{len(self.files)} Structured Reports"
        if self.not_dicom:
            text += (
                f"; {self.not_dicom} rated runs have none: their scan is not among the DICOM given "
                "(an SR references its images)"
            )
        return text


def write_structured_reports(
    store: StudyStore,
    out_dir: str | os.PathLike[str],
    *,
    dicom: Sequence[str | os.PathLike[str]],
    keep_identity: bool = False,
) -> SrExport:
    """One SR per (run, reader) with current ratings, into ``out_dir``; see the module docstring.

    Parameters
    ----------
    store : StudyStore
    out_dir : path-like
    dicom : sequence of path-like
        Folders (or files) of the source DICOM. The study file keeps no UIDs (cases are salted
        pseudonyms): each folder is read as the viewer reads it and a rated case is found by
        its pseudonym (same salt, ``$MLMI_INTERP_SALT``, as when it was rated).
    keep_identity : bool
        Copy the source's patient and study attributes (default: pseudonymised).
    """
    from highdicom import UID

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = _dicom_sources(dicom)
    identities = _identities([Path(p) for p in dicom]) if keep_identity else {}
    by_run: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in store.rows():
        key = (r["case"], r["model_sha256"], r["method"], r["target"], r["params"], r["reader"])
        by_run.setdefault(key, []).append(r)
    result, series_of_study, skipped = SrExport(), {}, set()
    for n, (key, ratings) in enumerate(by_run.items(), start=1):
        source = sources.get(key[0])
        if source is None:
            skipped.add(key[:5])
            continue
        study = source["StudyInstanceUID"]
        series = series_of_study.setdefault(study, str(UID()))
        identity = identities.get(source["SeriesInstanceUID"])
        if keep_identity and identity is None:  # pragma: no cover - the series was just read
            raise SrError(f"no header of series {source['SeriesInstanceUID']} (case {key[0]})")
        ds = _report(ratings, source, identity, series, n)
        path = out / f"sr-{key[0]}-{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        result.files.append(path)
    result.not_dicom = len(skipped)
    return result


def _dicom_sources(paths: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """Case pseudonym -> the source UIDs of every series under ``paths`` (read by :func:`io.load`)."""
    from ..io import load

    sources: dict[str, dict[str, Any]] = {}
    for path in paths:
        for volume in load(path):
            refs = volume.references
            if refs.get("StudyInstanceUID") and refs.get("SOPInstanceUIDs"):
                sources.setdefault(volume.case_id, {**refs, "Modality": volume.modality})
    return sources


def _evidence(source: dict[str, Any], identity: Any, case: str) -> list[Any]:
    from pydicom.dataset import Dataset

    datasets = []
    for uid in source["SOPInstanceUIDs"]:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: readers' names and notes in any script
        ds.StudyInstanceUID = source["StudyInstanceUID"]
        ds.SeriesInstanceUID = source["SeriesInstanceUID"]
        ds.SOPInstanceUID = uid
        ds.SOPClassUID = source["SOPClassUID"] or "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
        if identity is not None:
            for tag in _PATIENT_STUDY:
                if tag in identity:
                    setattr(ds, tag, identity[tag].value)
        else:  # pseudonymised: the case pseudonym, nothing else of the patient
            ds.PatientName, ds.PatientID = case, case
        for tag in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber"):
            if tag not in ds:
                setattr(ds, tag, "")
        for tag in ("StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName"):
            if tag not in ds:
                setattr(ds, tag, None)
        datasets.append(ds)
    return datasets


def _method_code(method: str) -> str:
    """A code value (SH, 16 characters) unique to an attribution method's name."""
    return "ATTR" + hashlib.sha256(method.encode()).hexdigest()[:12].upper()


def _content(ratings: list[dict[str, Any]]) -> Any:
    import highdicom.sr as sr
    from highdicom import UID
    from pydicom.sr.codedict import codes

    first = ratings[0]
    # a one-word reader name is a family name (DICOM PN: a trailing caret says so)
    name = first["reader"] if "^" in first["reader"] else f"{first['reader']}^"
    person = sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=sr.PersonObserverIdentifyingAttributes(name=name),
    )
    from .. import __version__

    device = sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=sr.DeviceObserverIdentifyingAttributes(
            uid=str(UID()), name="napari-mlmi-interp", model_name=__version__
        ),
    )
    evaluations, notes = [], []
    for r in ratings:
        if r["element"] == "action":
            name = sr.CodedConcept("READERACTION", SCHEME, "Reader's action on the explanation")
            value = sr.CodedConcept(_ACTION_CODES[r["rating"]], SCHEME, r["rating"].replace("_", " "))
            evaluations.append(sr.QualitativeEvaluation(name, value))
        elif r["element"] in ELEMENTS:
            name = element_code(r["element"])
            if r["rating"] == "NA":
                value = sr.CodedConcept("385432009", "SCT", "Not applicable")
            else:
                value = sr.CodedConcept(f"R{r['rating']}", SCHEME, f"{r['rating']} of 5")
            evaluations.append(sr.QualitativeEvaluation(name, value))
        else:
            continue
        if r["note"]:
            notes.append(sr.TextContentItem(name=name, value=str(r["note"]), relationship_type="CONTAINS"))
    target = f"{first['model']} · {first['method']} · {first['target']}"
    group = sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=sr.TrackingIdentifier(uid=str(UID()), identifier=target[:64]),
        method=sr.CodedConcept(_method_code(first["method"]), SCHEME, f"Attribution: {first['method']}"),
        algorithm_id=sr.AlgorithmIdentification(
            name=first["model"][:64], version=first["model_sha256"][:16] or "?"
        ),
        qualitative_evaluations=evaluations,
    )
    group[0].ContentSequence.extend(notes)
    return sr.MeasurementReport(
        observation_context=sr.ObservationContext(
            observer_person_context=person, observer_device_context=device
        ),
        procedure_reported=sr.CodedConcept("363679005", "SCT", "Imaging"),
        imaging_measurements=[group],
    )


def _report(ratings: list[dict[str, Any]], source: dict[str, Any], identity: Any, series: str, n: int) -> Any:
    import highdicom.sr as sr
    from highdicom import UID
    from pydicom.dataset import Dataset

    ds = sr.Comprehensive3DSR(
        evidence=_evidence(source, identity, ratings[0]["case"]),
        content=_content(ratings),
        series_instance_uid=series,
        series_number=9100,
        sop_instance_uid=str(UID()),
        instance_number=n,
        manufacturer="napari-mlmi-interp",
        is_complete=True,
        series_description="Interpretability ratings",
    )
    if identity is None:
        ds.PatientIdentityRemoved = "YES"
        # the UIDs are kept so the report references the rated images, as the map exports do
        ds.DeidentificationMethod = "napari-mlmi-interp: name/ID pseudonymised, UIDs retained"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "napari-mlmi-interp elements of interpretability"
    scheme.CodingSchemeResponsibleOrganization = "napari-mlmi-interp"
    ds.CodingSchemeIdentificationSequence = [scheme]
    # the content time is when the latest rating was made (UTC, as the study file keeps it)
    stamp = time.strptime(max(r["rated_at"] for r in ratings), "%Y-%m-%dT%H:%M:%SZ")
    ds.ContentDate, ds.ContentTime = time.strftime("%Y%m%d", stamp), time.strftime("%H%M%S", stamp)
    ds.TimezoneOffsetFromUTC = "+0000"
    return ds


def _identities(folders: Sequence[Path]) -> dict[str, Any]:
    """SeriesInstanceUID -> a header with the patient and study attributes, from ``folders``."""
    import pydicom

    found: dict[str, Any] = {}
    for folder in folders:
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            try:
                ds = pydicom.dcmread(
                    path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", *_PATIENT_STUDY]
                )
            except Exception:  # not DICOM: skipped, as the reader skips it
                continue
            uid = str(ds.get("SeriesInstanceUID", ""))
            if uid and uid not in found:
                found[uid] = ds
    return found
