"""Cohorts: batch explanations over many scans on Dask, with per-case outputs and a summary."""

from __future__ import annotations

from .batch import BatchResult, run_batch, run_case
from .manifest import Case, read_cases
from .report import write_report

__all__ = ["BatchResult", "Case", "read_cases", "run_batch", "run_case", "write_report"]
