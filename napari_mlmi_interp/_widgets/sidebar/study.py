"""Reader-study controls: the study file, *Reader study…*, *Next case*, progress; a case's layers.

The reader-study logic (order, resume, preparing an item) is
:class:`~napari_mlmi_interp.framework.reader_study.ReaderStudySession`; this module holds
the buttons and turns a prepared case into layers. :func:`case_layer_data` runs in the
worker thread with the preparation, :func:`add_case_layers` on the GUI thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from ...framework.reader_study import CASE_NAME, PreparedCase
from ...overlays import add_explanation_layers, add_layer, explanation_layer_data, volume_layer_data
from ...overlays.roles import set_blinded_label, set_study_item, study_item_of

__all__ = [
    "STUDY_ENV",
    "StudyControls",
    "add_case_layers",
    "case_layer_data",
    "default_study_path",
    "remove_study_layers",
]

STUDY_ENV = "MLMI_INTERP_STUDY"


def default_study_path() -> Path:
    """``$MLMI_INTERP_STUDY`` or ``~/.mlmi-interp/study.sqlite``."""
    env = os.environ.get(STUDY_ENV)
    return Path(env) if env else Path.home() / ".mlmi-interp" / "study.sqlite"


class StudyControls(QWidget):
    """ "ratings in" (the study file), *Reader study…* and *Next case*, the study's progress.

    Signals
    -------
    store_chosen(str)
        The reader picked a study file (path).
    study_chosen(str)
        The reader picked a reader-study JSON file (path).
    next_requested()
        *Next case* was pressed.
    progress_requested()
        *Progress…* was pressed (the reader-study dialog).
    """

    store_chosen = Signal(str)
    study_chosen = Signal(str)
    next_requested = Signal()
    progress_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        study_row = QHBoxLayout()
        self.study_label = QLabel()
        self.study_label.setWordWrap(True)
        open_store = QPushButton("Study file…")
        open_store.clicked.connect(self._choose_store)
        study_row.addWidget(self.study_label, 1)
        study_row.addWidget(open_store)
        form.addRow("ratings in", study_row)
        reader_row = QHBoxLayout()
        self.reader_study_button = QPushButton("Reader study…")
        self.reader_study_button.clicked.connect(self._choose_study)
        self.next_button = QPushButton("Next case")
        self.next_button.setEnabled(False)
        self.next_button.clicked.connect(self.next_requested)
        self.progress_button = QPushButton("Progress…")
        self.progress_button.setToolTip("Items left per reader; the analysis report once all are done")
        self.progress_button.setEnabled(False)
        self.progress_button.clicked.connect(self.progress_requested)
        reader_row.addWidget(self.reader_study_button)
        reader_row.addWidget(self.next_button)
        reader_row.addWidget(self.progress_button)
        form.addRow("", reader_row)
        self.study_status = QLabel("")
        form.addRow("", self.study_status)

    def show_store(self, path: Any) -> None:
        self.study_label.setText(str(path))
        self.study_label.setToolTip(str(path))

    def _choose_store(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Study file",
            self.study_label.text() or str(default_study_path()),
            "Study (*.sqlite *.db)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.store_chosen.emit(path)

    def _choose_study(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reader study", "", "Study (*.json)")
        if path:
            self.study_chosen.emit(path)


def case_layer_data(case: PreparedCase, *, percent: float) -> dict[str, tuple]:
    """The heatmap and contour LayerData of a prepared case: blinded, pointing at its held model.

    Pure computation (scaling, top-k): run it in the worker with the preparation.
    """
    data = explanation_layer_data(
        case.explanation,
        scan_name=CASE_NAME,
        method_title=case.label,
        percent=percent,
        surface=False,
        model_key=case.model_key,
    )
    set_blinded_label(data["heatmap"], case.label)
    return data


def add_case_layers(viewer: Any, case: PreparedCase, data: dict[str, tuple]) -> tuple[Any, Any]:
    """Add a case's scan, hidden reference region and explanation; ``(heatmap, region or None)``.

    Every layer is marked with the item's id, so :func:`remove_study_layers` clears them.
    """
    item_id = case.item.id
    scan_layer = add_layer(viewer, volume_layer_data(case.scan, name=CASE_NAME))
    set_study_item(scan_layer, item_id)
    region = None
    if case.roi is not None:
        region = add_layer(
            viewer,
            volume_layer_data(
                case.roi, layer_type="labels", name=f"{CASE_NAME} · reference region", opacity=0.35
            ),
        )
        region.visible = False
        set_study_item(region, item_id)
    layers = add_explanation_layers(viewer, data)
    for ly in layers.values():
        set_study_item(ly, item_id)
    return layers["heatmap"], region


def remove_study_layers(viewer: Any) -> None:
    """Remove every layer of a reader-study item."""
    for ly in [ly for ly in viewer.layers if study_item_of(ly) is not None]:
        viewer.layers.remove(ly)
