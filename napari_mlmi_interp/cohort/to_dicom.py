"""A batch case's maps into its source study: DICOM export, and with ``store`` STOW-RS to a PACS.

Kept apart from :mod:`.batch` (which runs the cases): what one method's map becomes in DICOM
and where it goes. A failed export leaves the maps standing and says why in the case's notes;
a failed store fails the case (nothing half-stored is reported as done; a rerun tries again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, MlmiError
from ..io.dicomweb import source_url

__all__ = ["ExportRequest", "StoreFailed", "export_to_dicom", "store_target"]

#: ``store`` value meaning "the DICOMweb server the case was read from".
SOURCE_SERVER = "source"


class StoreFailed(MlmiError):
    """A method's DICOM objects did not all reach the PACS; the message says which and why."""


@dataclass(frozen=True)
class ExportRequest:
    """Where and how one method's map goes into the source study.

    ``store``: ``None`` (write the files only), :data:`SOURCE_SERVER` (send them to the
    DICOMweb server the scan came from) or a DICOMweb root URL.
    """

    folder: Path
    method: str
    percent: float
    keep_identity: bool
    store: str | None = None


def store_target(volume: Any, store: str | None) -> str | None:
    """The DICOMweb URL ``store`` means for ``volume`` (None: do not store).

    Raises
    ------
    InputError
        ``store`` is the source server but the scan was not read from DICOMweb.
    """
    if store is None:
        return None
    if store == SOURCE_SERVER:
        url = source_url(volume)
        if not url:
            raise InputError(
                "--store without a URL sends to the DICOMweb server the scan came from, but this "
                "scan was read from disk: give the server (--store http://HOST/dicom-web)"
            )
        return str(url)
    return store


def export_to_dicom(
    result: Any, volume: Any, request: ExportRequest, sources: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    """The map written into the source study (and stored); what was written, or why not.

    ``sources`` caches the source headers across methods (read on the first success). An
    export that cannot be made is a note (the maps stand); a store that fails raises
    :class:`StoreFailed` after the files are written, so the case is not reported as done.
    """
    from ..export import ExportError, describe_store, export_dicom, source_datasets, store_export

    try:
        if "datasets" not in sources:
            sources["datasets"] = source_datasets(volume)
        exported = export_dicom(
            result.native,
            volume,
            request.folder,
            method=request.method,
            target=str(result.target.get("name", "")),
            percent=request.percent,
            # objects filed into the source study carry its patient (a PACS files by patient and
            # study: a pseudonym would open a second patient with the same Study Instance UID)
            keep_identity=request.keep_identity or request.store is not None,
            sources=sources["datasets"],
        )
    except ExportError as exc:  # the maps stand; the DICOM copy says why it is missing
        if request.store is not None:  # asked to store: nothing to store is a failure
            raise StoreFailed(f"{request.method}: nothing stored, no DICOM export ({exc})") from None
        record.setdefault("notes", []).append(f"{request.method}: no DICOM export ({exc})")
        return {"error": str(exc)}
    out = {k: v for k, v in exported.items() if k != "derived_series"}
    out["derived_series"] = str(request.folder / "derived")
    url = store_target(volume, request.store)
    if url is not None:
        report = store_export(url, exported)
        out["store"] = report
        if report["status"] != "stored":
            raise StoreFailed(f"{request.method}: {describe_store(report)}")
    return out
