"""STOW-RS: derived objects sent back into their source study on a DICOMweb server.

:func:`store_files` sends each file in its own request (so each object's fate is known),
retries what may pass on a second try (no connection, a timeout, HTTP 408, 429 and 5xx)
with a growing pause, and then asks the server (QIDO-RS) whether it lists every instance
it acknowledged. :func:`store_export` groups the files of one
:func:`~napari_mlmi_interp.export.export_dicom` result into its objects (the derived series,
the Parametric Map, the SEG): an object is ``"stored"`` only when every one of its
instances is; otherwise it is ``"failed"`` with how many were stored and why the others were
not. Nothing half-stored is reported as done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import MlmiError
from ..io.dicomweb import DicomwebURL, connect, parse_url
from ..io.dicomweb.retrieve import instance_uids

__all__ = [
    "StoredInstance",
    "StowError",
    "describe_store",
    "export_and_store",
    "store_export",
    "store_files",
]

RETRIABLE_STATUS = {408, 429, 500, 502, 503, 504}
_FAILED_SOP_SEQUENCE = "FailedSOPSequence"


class StowError(MlmiError, ValueError):
    """Objects cannot be stored: no DICOMweb server to send to, or files of another study."""


@dataclass
class StoredInstance:
    """What happened to one file."""

    path: str
    sop_instance_uid: str
    series_instance_uid: str
    status: str = "pending"  # "stored" or "failed"
    attempts: int = 0
    error: str | None = None


def _retriable(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status in RETRIABLE_STATUS
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


def _describe(exc: BaseException, url: DicomwebURL) -> str:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        r = exc.response
        return f"HTTP {r.status_code} {r.reason or ''}".strip()
    if isinstance(exc, requests.Timeout):
        return "the server did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot reach {url.server}"
    return f"{type(exc).__name__}: {exc}"


def _send(client: Any, ds: Any, study: str) -> None:
    """One STOW-RS request for one instance; a refusal inside a 200/202 reply raises too."""
    reply = client.store_instances([ds], study_instance_uid=study)
    failed = reply.get(_FAILED_SOP_SEQUENCE) if reply is not None else None
    if failed:
        reason = failed[0].get("FailureReason", "unknown")
        raise RuntimeError(f"the server refused the instance (failure reason {reason})")


def _store_one(
    client: Any, item: StoredInstance, ds: Any, study: str, url: DicomwebURL, retries: int, pause: Callable
) -> None:
    for attempt in range(1, retries + 2):
        item.attempts = attempt
        try:
            _send(client, ds, study)
        except Exception as exc:
            item.error = _describe(exc, url)
            if attempt <= retries and _retriable(exc):
                pause(0.5 * 2 ** (attempt - 1))
                continue
            item.status = "failed"
            return
        item.status, item.error = "stored", None
        return


def _listed(client: Any, url: DicomwebURL, study: str, series: set[str]) -> set[str]:
    """The SOP Instance UIDs the server lists in ``series`` of ``study``."""
    found: set[str] = set()
    for uid in series:
        found |= set(
            instance_uids(client, DicomwebURL(url.root, study, uid), what=f"the stored series {uid}")
        )
    return found


def store_files(
    url: str | DicomwebURL,
    files: list[str | Path],
    *,
    study_uid: str,
    retries: int = 3,
    pause: Callable[[float], None] = time.sleep,
) -> list[StoredInstance]:
    """Send DICOM files into study ``study_uid`` on the server at ``url``, one request each.

    Parameters
    ----------
    url : str or DicomwebURL
        The DICOMweb root (or any study/series URL of the server).
    files : list of path
        DICOM files, all of study ``study_uid``.
    retries : int
        Further tries for a failure that may pass (no connection, timeout, 408, 429, 5xx),
        after 0.5, 1, 2, ... s.

    Returns
    -------
    list of StoredInstance
        One per file, ``"stored"`` only when the server acknowledged it *and* lists it.
    """
    import pydicom

    url = parse_url(url) if isinstance(url, str) else url
    datasets = [pydicom.dcmread(str(f)) for f in files]
    others = {str(ds.StudyInstanceUID) for ds in datasets} - {study_uid}
    if others:
        raise StowError(f"{len(others)} of the files belong to another study than {study_uid}: not stored")
    client = connect(url)
    items = [
        StoredInstance(str(f), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))
        for f, ds in zip(files, datasets)
    ]
    for item, ds in zip(items, datasets):
        _store_one(client, item, ds, study_uid, url, retries, pause)
    acknowledged = [i for i in items if i.status == "stored"]
    if acknowledged:
        listed = _listed(client, url, study_uid, {i.series_instance_uid for i in acknowledged})
        for item in acknowledged:
            if item.sop_instance_uid not in listed:
                item.status, item.error = "failed", "acknowledged, but the server does not list it"
    return items


def _object(name: str, items: list[StoredInstance]) -> dict[str, Any]:
    stored = sum(i.status == "stored" for i in items)
    errors = sorted({i.error for i in items if i.error})
    return {
        "object": name,
        "series_instance_uid": items[0].series_instance_uid if items else None,
        "instances": len(items),
        "stored": stored,
        "status": "stored" if items and stored == len(items) else "failed",
        "errors": errors,
        "attempts": max((i.attempts for i in items), default=0),
    }


def store_export(url: str | DicomwebURL, exported: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Store one :func:`~napari_mlmi_interp.export.export_dicom` result into its study.

    Returns
    -------
    dict
        ``server``, ``study_instance_uid``, ``status`` (``"stored"`` when every object is,
        else ``"failed"``) and ``objects``: per object (derived series, Parametric Map, SEG)
        its series UID, instances, how many were stored, its status and errors.
    """
    url = parse_url(url) if isinstance(url, str) else url
    groups = {
        "derived series": list(exported.get("derived_series") or []),
        "parametric map": [exported["parametric_map"]] if exported.get("parametric_map") else [],
        "segmentation": [exported["segmentation"]] if exported.get("segmentation") else [],
    }
    files = [f for group in groups.values() for f in group]
    if not files:
        raise StowError("nothing to store: the export wrote no DICOM files")
    items = store_files(url, files, study_uid=str(exported["study_instance_uid"]), **kwargs)
    by_path = {i.path: i for i in items}
    objects = [_object(name, [by_path[str(f)] for f in group]) for name, group in groups.items() if group]
    return {
        "server": url.server,
        "root": url.root,
        "study_instance_uid": str(exported["study_instance_uid"]),
        "status": "stored" if all(o["status"] == "stored" for o in objects) else "failed",
        "objects": objects,
        "instances": [asdict(i) for i in items if i.status != "stored"],
    }


def describe_store(report: dict[str, Any]) -> str:
    """One line for a :func:`store_export` report: per object, how many instances were stored."""
    parts = []
    for obj in report["objects"]:
        text = f"{obj['object']} {obj['stored']}/{obj['instances']} {obj['status']}"
        if obj["errors"]:
            text += f" ({'; '.join(obj['errors'])})"
        parts.append(text)
    verb = "stored in" if report["status"] == "stored" else "NOT all stored in"
    return f"{verb} {report['server']} study {report['study_instance_uid']}: " + ", ".join(parts)


def export_and_store(
    explanation: Any,
    volume: Any,
    folder: str | Path,
    *,
    url: str | DicomwebURL,
    percent: float,
    **kwargs: Any,
) -> dict[str, Any]:
    """Write an explanation into its source study and store it there (the panel's *Send to PACS*).

    The objects carry the study's patient identity: they are filed beside its images (a
    pseudonym would open a second patient with the same Study Instance UID).

    Parameters
    ----------
    explanation : Explanation
        Its ``native`` map on ``volume``'s grid.
    volume : Volume
        The scan, read from DICOM (a DICOMweb series is: its cache folder holds the slices).
    folder : path
        Where the DICOM files are written before they are sent.
    url : str or DicomwebURL
        The DICOMweb server (any URL of it).

    Returns
    -------
    dict
        :func:`store_export`'s report.
    """
    from .dicom import export_dicom

    exported = export_dicom(
        explanation.native,
        volume,
        folder,
        method=str(explanation.method),
        target=str(explanation.target.get("name", "")),
        percent=percent,
        keep_identity=True,
    )
    return store_export(url, exported, **kwargs)
