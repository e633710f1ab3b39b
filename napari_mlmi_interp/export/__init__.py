"""Exports in the source's geometry: DICOM derived series, Parametric Map and SEG; STOW-RS back to a PACS."""

from __future__ import annotations

from .dicom import ExportError, export_dicom, source_datasets
from .stow import StowError, describe_store, export_and_store, store_export, store_files

__all__ = [
    "ExportError",
    "StowError",
    "describe_store",
    "export_and_store",
    "export_dicom",
    "source_datasets",
    "store_export",
    "store_files",
]
