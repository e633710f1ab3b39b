"""Reader studies that produce evidence: merged ratings, agreement, ratings vs figures, reports.

Pure compute over :mod:`napari_mlmi_interp.store` (no napari, no Qt): :func:`analyze_study`
(``mlmi-interp study analyze``), :func:`write_report` (its HTML report with plots),
:func:`study_progress` (items left per reader) and :func:`write_structured_reports` (each rated
run as a DICOM Structured Report, ``ratings export --sr``).
"""

from __future__ import annotations

from .analysis import KAPPA_WEIGHTS, analyze_data, analyze_study
from .data import StudyData, load_study

__all__ = ["KAPPA_WEIGHTS", "StudyData", "analyze_data", "analyze_study", "load_study"]
