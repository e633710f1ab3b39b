"""QIDO-RS search: studies and their series, without patient identity unless asked for.

:func:`search` returns plain dictionaries (what ``pacs search --json`` prints and the PACS
panel's table shows): per study its UID, date, description, modalities and series, per
series its UID, number, modality, description, number of instances and URL. The patient's
name, ID and birth date are included only with ``show_identity=True``.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import LoadError
from .client import call, connect
from .url import DicomwebURL, parse_url

__all__ = ["IDENTITY_FIELDS", "check_date_range", "search"]

#: Patient fields shown only when asked for (``--show-identity``).
IDENTITY_FIELDS = {"PatientName": "00100010", "PatientID": "00100020", "PatientBirthDate": "00100030"}

_STUDY_FIELDS = {
    "study_uid": "0020000D",
    "date": "00080020",
    "description": "00081030",
    "accession": "00080050",
    "modalities": "00080061",
    "series_count": "00201206",
    "instance_count": "00201208",
}
_SERIES_FIELDS = {
    "series_uid": "0020000E",
    "number": "00200011",
    "modality": "00080060",
    "description": "0008103E",
    "instances": "00201209",
}
_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


def check_date_range(text: str) -> str:
    """A DICOM date range (``YYYYMMDD``, ``YYYYMMDD-``, ``-YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``).

    Dashes inside a date (``2023-03-14``) are accepted and removed.
    """
    compact = re.sub(r"(\d{4})-(\d{2})-(\d{2})", r"\1\2\3", text.strip())
    m = _DATE.match(compact)
    if not compact or m is None or (m.group(2) is None and m.group(3) is not None) or compact == "-":
        raise LoadError(
            f"study date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be open), got {text!r}"
        )
    return compact


def _plain(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    out = []
    for v in values:
        out.append(v.get("Alphabetic", "") if isinstance(v, dict) else v)
    if not out:
        return None
    return out if len(out) > 1 else out[0]


def _fields(item: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    return {name: _plain(item, tag) for name, tag in fields.items()}


def _series_of(client: Any, url: DicomwebURL, study: str) -> list[dict[str, Any]]:
    found = call(
        url,
        f"the series of study {study}",
        client.search_for_series,
        study,
        fields=list(_SERIES_FIELDS.values()),
        get_remaining=True,
    )
    rows = [_fields(item, _SERIES_FIELDS) for item in found]
    for row in rows:
        row["url"] = str(DicomwebURL(url.root, study, str(row["series_uid"])))
    return sorted(
        rows,
        key=lambda r: (int(r["number"]) if str(r["number"] or "").isdigit() else 1 << 30, r["series_uid"]),
    )


def search(
    url: str | DicomwebURL,
    *,
    patient_id: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    show_identity: bool = False,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The studies on a DICOMweb server that match, each with its series.

    Parameters
    ----------
    url : str or DicomwebURL
        The DICOMweb root (or a study URL: that study only).
    patient_id, study_date, modality : str, optional
        QIDO-RS filters: ``PatientID``, ``StudyDate`` (a DICOM date range, see
        :func:`check_date_range`) and ``ModalitiesInStudy``.
    show_identity : bool
        Include the patient's name, ID and birth date.
    limit : int
        At most this many studies.
    """
    url = parse_url(url) if isinstance(url, str) else url
    filters: dict[str, Any] = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if study_date:
        filters["StudyDate"] = check_date_range(study_date)
    if modality:
        filters["ModalitiesInStudy"] = modality.strip().upper()
    if url.study:
        filters["StudyInstanceUID"] = url.study
    fields = list(_STUDY_FIELDS.values()) + (list(IDENTITY_FIELDS.values()) if show_identity else [])
    client = connect(url)
    found = call(
        url, "the study search", client.search_for_studies, search_filters=filters, fields=fields, limit=limit
    )
    studies = []
    seen: set[str] = set()
    for item in found:
        study = _fields(item, _STUDY_FIELDS)
        # a server may list one study twice (Orthanc, when objects of another patient carry its UID)
        if study["study_uid"] in seen:
            continue
        seen.add(str(study["study_uid"]))
        if show_identity:
            study.update(_fields(item, IDENTITY_FIELDS))
        study["url"] = str(DicomwebURL(url.root, str(study["study_uid"])))
        study["series"] = _series_of(client, url, str(study["study_uid"]))
        if modality:  # a study's series of other modalities are not what was asked for
            study["series"] = [
                s for s in study["series"] if str(s["modality"] or "").upper() == filters["ModalitiesInStudy"]
            ]
        studies.append(study)
    return sorted(studies, key=lambda s: (str(s["date"] or ""), str(s["study_uid"])), reverse=True)
