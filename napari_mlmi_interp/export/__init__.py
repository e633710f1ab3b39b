"""Exports in the source's geometry: DICOM derived series, Parametric Map and SEG."""

from __future__ import annotations

from .dicom import ExportError, export_dicom, source_datasets

__all__ = ["ExportError", "export_dicom", "source_datasets"]
