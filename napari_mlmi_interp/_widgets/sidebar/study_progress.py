"""The reader-study dialog: items left per reader, and the analysis report once all are done.

Thin: progress is :func:`napari_mlmi_interp.study.progress.reader_progress` (read-only over the
study files), the analysis :func:`napari_mlmi_interp.study.analyze_study` and
:func:`~napari_mlmi_interp.study.report.report_html`, run off the GUI thread by a
:class:`~napari_mlmi_interp._widgets.jobs.JobRunner`; the report opens in a
:class:`ReportDialog` and is written beside the study file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...explain import Cancelled
from ...framework.study import ReaderStudy
from ...study.progress import ReaderProgress, is_complete, reader_progress
from ..jobs import JobRunner, describe_error

__all__ = ["ReportDialog", "StudyProgressDialog", "report_path_for"]


def report_path_for(study: ReaderStudy, store_path: str | os.PathLike[str]) -> Path:
    """Where the analysis report of ``study`` goes: beside the study file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", study.name).strip("-") or "study"
    return Path(store_path).with_name(f"{safe}-analysis.html")


class ReportDialog(QDialog):
    """The analysis report (HTML with its plots) in a text browser."""

    def __init__(self, html: str, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Reader study analysis — {path.name}")
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(html)
        layout.addWidget(self.browser)
        where = QLabel(f"Saved as {path}")
        where.setWordWrap(True)
        layout.addWidget(where)
        self.resize(980, 760)


class StudyProgressDialog(QDialog):
    """Progress of a reader study across readers; opens the analysis report when it is complete.

    Parameters
    ----------
    study : ReaderStudy
    store_path : path-like
        The study file being rated into (read here, never written).
    open_report_when_complete : bool
        Run the analysis and show the report as soon as a refresh finds the study complete
        (every reader of the study's roster finished every item; never without a roster).
    """

    def __init__(
        self,
        study: ReaderStudy,
        store_path: str | os.PathLike[str],
        parent: QWidget | None = None,
        *,
        open_report_when_complete: bool = True,
    ) -> None:
        super().__init__(parent)
        self.study = study
        self.files: list[Path] = [Path(store_path)]
        self.report_path = report_path_for(study, store_path)
        self.report_dialog: ReportDialog | None = None
        self.auto_report = open_report_when_complete
        self.setWindowTitle(f"Reader study — {study.name}")
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["reader", "done", "left"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.files_label = QLabel("")
        self.files_label.setWordWrap(True)
        layout.addWidget(self.files_label)
        row = QHBoxLayout()
        self.add_button = QPushButton("Other readers' files…")
        self.add_button.clicked.connect(self._choose_files)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.report_button = QPushButton("Analysis report")
        self.report_button.clicked.connect(self.open_report)
        for b in (self.add_button, self.refresh_button, self.report_button):
            row.addWidget(b)
        layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        bar = QHBoxLayout()
        bar.addWidget(self.progress_bar, 1)
        bar.addWidget(self.cancel_button)
        layout.addLayout(bar)
        self.jobs = JobRunner(
            self, progress=self.progress_bar, cancel_button=self.cancel_button, status=self.status
        )
        self.progress: list[ReaderProgress] = []
        self.resize(460, 360)
        self.refresh()

    def add_files(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Read progress (and the analysis) from these study files too."""
        for p in paths:
            if Path(p) not in self.files:
                self.files.append(Path(p))
        self.refresh()

    def _choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Other readers' study files", "", "Study (*.sqlite *.db)"
        )
        if paths:
            self.add_files(paths)

    def refresh(self) -> list[ReaderProgress]:
        """Re-read the progress; open the report when the study has just become complete."""
        self.progress = reader_progress(self.study, self.files)
        self.table.setRowCount(len(self.progress))
        for i, p in enumerate(self.progress):
            for j, text in enumerate((p.reader, f"{p.done} of {p.total}", str(p.left))):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.files_label.setText("Study files: " + ", ".join(f.name for f in self.files))
        complete = is_complete(self.progress)
        if not self.progress:
            self.status.setText("No reader has finished an item yet.")
        elif complete and not self.study.readers:
            self.status.setText(
                'Complete for the readers seen so far (the study file lists no "readers"): '
                "open the report when everyone is done."
            )
        elif complete:
            self.status.setText(f"Complete: {len(self.progress)} readers × {self.progress[0].total} items.")
        else:
            left = sum(p.left for p in self.progress)
            self.status.setText(f"{left} items left across {len(self.progress)} readers.")
        # without a roster "complete" only means "the readers seen so far": no report by itself
        if complete and self.study.readers and self.auto_report and self.report_dialog is None:
            self.open_report()
        return self.progress

    def open_report(self) -> None:
        """Analyse the study (off the GUI thread), write the report, show it."""
        files, name, out = list(self.files), self.study.name, self.report_path

        def work(token: Any, report: Any) -> tuple[str, Path]:
            from ...study import analyze_study
            from ...study.report import report_html

            result = analyze_study(files, progress=report, cancel=token)
            if token.cancelled:
                raise Cancelled()
            html = report_html(result, name=name)
            out.write_text(html, encoding="utf-8")
            return html, out

        self.jobs.start(
            work,
            on_done=lambda res: self._show_report(*res),
            on_error=lambda exc: self.status.setText(f"Error: {describe_error(exc)}"),
            busy_text="Analysing the study…",
        )

    def _show_report(self, html: str, path: Path) -> None:
        self.status.setText(f"Analysis report: {path}")
        self.report_dialog = ReportDialog(html, path, self)
        self.report_dialog.show()
