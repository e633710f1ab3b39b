"""The sidebar's reader-study actions: open a study, *Next case*, the study's progress dialog.

A mixin of :class:`~napari_mlmi_interp._widgets.sidebar.panel.FrameworkSidebar` (kept apart so
the panel stays a readable size): it drives the Qt-free
:class:`~napari_mlmi_interp.framework.reader_study.ReaderStudySession` and uses the panel's
session, study file, job runner and status line.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import MlmiError
from ...framework.reader_study import ReaderStudySession
from .study import add_case_layers, case_layer_data, remove_study_layers
from .study_progress import StudyProgressDialog

__all__ = ["ReaderStudyMixin"]


class ReaderStudyMixin:
    """Reader-study behaviour of the framework sidebar (see the module docstring)."""

    study_session: ReaderStudySession | None
    study_dialog: StudyProgressDialog | None
    session: Any
    store: Any
    model_jobs: Any
    viewer: Any

    @property
    def study(self):
        """The :class:`~napari_mlmi_interp.framework.study.ReaderStudy` being run, or None."""
        return self.study_session.study if self.study_session is not None else None

    @property
    def study_item(self):
        """``(position, item)`` of the reader-study item shown, or None."""
        return self.study_session.current if self.study_session is not None else None

    def open_study(self, path: str | os.PathLike[str]) -> None:
        """Start (or resume) a reader study for the current reader."""
        try:
            study = ReaderStudySession.open(path, self.session, reader=self.reader.text())
        except (MlmiError, ValueError) as exc:
            self._error(str(exc))
            return
        self.study_session = study
        self.set_goal(study.study.goal)
        self.next_button.setEnabled(True)
        self.study_controls.progress_button.setEnabled(True)
        self._study_progress()

    def _study_progress(self) -> None:
        if self.study_session is not None and self.store is not None:
            self.study_status.setText(self.study_session.status())

    def next_case(self) -> None:
        """Finish the current study item and prepare the next one (blinded), off the GUI thread."""
        study = self.study_session
        if study is None or self.store is None or self.model_jobs.busy:
            return
        study.finish(self.session.run_id)
        nxt = study.next_item()
        remove_study_layers(self.viewer)
        if nxt is None:
            self.session.clear()
            self.study_status.setText(f"{study.name}: all {len(study.study.items)} done. Thank you.")
            self.next_button.setEnabled(False)
            self.show_study_progress()  # the other readers' progress; the report if all are done
            return
        position, item = nxt
        percent = self._percent()  # read here: the worker thread must not touch the layers

        def work(token, report):
            case = ReaderStudySession.prepare(position, item, progress=report, cancel=token)
            return case, case_layer_data(case, percent=percent)

        self.model_jobs.start(
            work,
            on_done=lambda out: self._show_case(*out),
            on_error=self._job_error,
            busy_text=f"Preparing {study.study.label(position)}…",
        )

    def show_study_progress(self) -> StudyProgressDialog | None:
        """The reader-study dialog: items left per reader; it opens the report once all are done."""
        if self.study_session is None or self.store is None:
            return None
        if self.study_dialog is None or self.study_dialog.study is not self.study_session.study:
            self.study_dialog = StudyProgressDialog(self.study_session.study, self.store.path, self)
        else:
            self.study_dialog.refresh()
        self.study_dialog.show()
        return self.study_dialog

    def _show_case(self, case, data: dict) -> None:
        heatmap, region = add_case_layers(self.viewer, case, data)
        self.study_session.shown(case)
        self.select(heatmap)
        if region is not None:
            self.select_region(region)
        n = len(self.study_session.study.items)
        self.study_status.setText(f"{self.study_session.name}: {case.label}, {case.position + 1} of {n}")
