"""The PACS dock: search a DICOMweb server, open a series as layers, send an explanation back.

Thin: :func:`~napari_mlmi_interp.io.dicomweb.search` and
:func:`~napari_mlmi_interp.io.dicomweb.load_url` do the work in a napari worker (progress in
instances, Cancel between instances); :func:`~napari_mlmi_interp.export.export_and_store`
writes an explanation into its source study and stores it (STOW-RS), reporting per object.
The servers used last are remembered beside napari's own settings (:mod:`.._pacs_servers`).
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._pacs_servers import recent_servers, remember_server
from ..io.dicomweb import source_url
from ..overlays.roles import Role, explanation_of, layers_of, scan_for
from .jobs import JobRunner, describe_error

__all__ = ["PacsWidget"]

_COLUMNS = ("series", "modality", "images", "date", "study", "#")


class PacsWidget(QWidget):
    """PACS: search a DICOMweb server, open the chosen series, send an explanation back."""

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.results: list[dict[str, Any]] = []  # one per table row: the series and its study
        self.server = QComboBox()
        self.server.setEditable(True)
        self.server.setToolTip(
            "the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (Orthanc); credentials come from "
            "MLMI_DICOMWEB_TOKEN or MLMI_DICOMWEB_USER/_PASSWORD or the DICOMweb config file, never here"
        )
        self.server.lineEdit().setPlaceholderText("http://HOST:PORT/dicom-web")
        self.server.addItems(recent_servers())
        self.patient_id = QLineEdit()
        self.study_date = QLineEdit()
        self.study_date.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.modality = QLineEdit()
        self.modality.setPlaceholderText("MR, CT, …")
        self.search_button = QPushButton("Search")
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("retrieve the chosen series (cached on disk by UID) and show it in mm")
        self.heatmap = QComboBox()
        self.heatmap.setToolTip("an explanation of a scan opened from this server")
        self.send_button = QPushButton("Send to PACS")
        self.send_button.setToolTip(
            "write the explanation into its source study (derived series, Parametric Map, SEG of the "
            "top-k % region, with the study's patient identity) and store it on the server (STOW-RS)"
        )
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # room for a store report (one wrapped line per object) below the table's stretch
        self.status.setMinimumHeight(self.status.fontMetrics().lineSpacing() * 5)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self._layout()
        self.setMinimumWidth(460)  # the table's series, modality, images and date columns in full
        self.jobs = JobRunner(
            self, progress=self.progress, cancel_button=self.cancel_button, status=self.status
        )
        self.jobs.busy_changed.connect(self._busy)
        self.search_button.clicked.connect(self.search)
        self.open_button.clicked.connect(self.open_selected)
        self.table.itemDoubleClicked.connect(lambda _item: self.open_selected())
        self.send_button.clicked.connect(self.send_selected)
        viewer.layers.events.inserted.connect(self.refresh_heatmaps)
        viewer.layers.events.removed.connect(self.refresh_heatmaps)
        self.refresh_heatmaps()
        self._busy(False)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("server", self.server)
        form.addRow("patient ID", self.patient_id)
        form.addRow("study date", self.study_date)
        form.addRow("modality", self.modality)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.search_button)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.open_button)
        send = QHBoxLayout()
        send.addWidget(QLabel("explanation"))
        send.addWidget(self.heatmap, stretch=1)
        send.addWidget(self.send_button)
        layout.addLayout(send)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, stretch=1)
        bar.addWidget(self.cancel_button)
        layout.addLayout(bar)
        layout.addWidget(self.status)

    # -- state ---------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def _busy(self, busy: bool) -> None:
        for button in (self.search_button, self.open_button, self.send_button):
            button.setEnabled(not busy)
        if not busy:
            self.open_button.setEnabled(bool(self.results))
            self.send_button.setEnabled(self.heatmap.count() > 0)

    def refresh_heatmaps(self, *_: Any) -> None:
        """The explanation layers the viewer holds (keeps the current one when still there)."""
        current = self.heatmap.currentText()
        self.heatmap.clear()
        for layer in layers_of(self.viewer, Role.HEATMAP):
            if explanation_of(layer) is not None:
                self.heatmap.addItem(layer.name)
        index = self.heatmap.findText(current)
        self.heatmap.setCurrentIndex(max(index, 0))
        if not self.busy:
            self.send_button.setEnabled(self.heatmap.count() > 0)

    def _server(self) -> str:
        return self.server.currentText().strip()

    def _remember(self, url: str) -> None:
        servers = remember_server(url)
        self.server.blockSignals(True)
        self.server.clear()
        self.server.addItems(servers)
        self.server.setCurrentText(url)
        self.server.blockSignals(False)

    # -- search ----------------------------------------------------------------------------------------
    def search(self) -> None:
        """Search the server (QIDO-RS) with the fields given; the table lists every series found."""
        from ..io.dicomweb import search

        server = self._server()
        if not server:
            self.status.setText("Give the server's DICOMweb root (http://HOST:PORT/dicom-web).")
            return
        filters = {
            "patient_id": self.patient_id.text().strip() or None,
            "study_date": self.study_date.text().strip() or None,
            "modality": self.modality.text().strip() or None,
        }
        self.jobs.start(
            lambda _token, _report: search(server, **filters),
            on_done=lambda studies: self._show_results(server, studies),
            on_error=self._error,
            busy_text=f"Searching {server}…",
        )

    def _show_results(self, server: str, studies: list[dict[str, Any]]) -> None:
        self._remember(server)
        self.results = [{**s, "study": st} for st in studies for s in st["series"]]
        self.table.setRowCount(len(self.results))
        for row, found in enumerate(self.results):
            study = found["study"]
            cells = (
                found.get("description") or "",
                found.get("modality") or "",
                "" if found.get("instances") is None else str(found["instances"]),
                study.get("date") or "",
                study.get("description") or "",
                "" if found.get("number") is None else str(found["number"]),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setToolTip(found["url"])
                self.table.setItem(row, col, item)
        if self.results:
            self.table.selectRow(0)
        n_studies = len(studies)
        self.status.setText(f"{n_studies} studies, {len(self.results)} series.")
        self._busy(False)

    # -- open ------------------------------------------------------------------------------------------
    def selected_url(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.results):
            return None
        return str(self.results[rows[0].row()]["url"])

    def open_selected(self) -> None:
        """Retrieve the chosen series (WADO-RS, cached) off the GUI thread and add its layers."""
        url = self.selected_url()
        if url is None:
            self.status.setText("Search, then choose a series.")
            return
        self.open_url(url)

    def open_url(self, url: str) -> None:
        """Open a DICOMweb study or series URL as layers (in a worker, with progress and Cancel)."""
        import warnings

        from ..io import LoadWarning
        from ..io.dicomweb import load_url
        from ..overlays.volume_layers import volume_layer_data

        def work(token: Any, report: Any) -> tuple[list[Any], list[tuple], list[str]]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", LoadWarning)
                volumes = load_url(url, progress=report, cancel=token)
            return volumes, [volume_layer_data(v) for v in volumes], [str(w.message) for w in caught]

        self.jobs.start(
            work, on_done=self._show_volumes, on_error=self._error, busy_text="Retrieving the series…"
        )

    def _show_volumes(self, out: tuple[list[Any], list[tuple], list[str]]) -> None:
        from .._reader import load_messages
        from ..overlays.volume_layers import add_layer_data, show_radiologically

        volumes, layers, caught = out
        empty = len(self.viewer.layers) == 0
        for data in layers:
            add_layer_data(self.viewer, data)
        if empty and volumes:
            show_radiologically(self.viewer, volumes[0])
        url = source_url(volumes[0]) if volumes else None
        if url:
            self._remember(url.split("/studies/")[0])
        notes = load_messages(caught, volumes)
        names = "; ".join(v.name for v in volumes)
        self.status.setText(f"Opened {names}." + "".join(f"\nwarning: {n}" for n in notes))

    # -- send back -------------------------------------------------------------------------------------
    def send_selected(self) -> None:
        """Write the chosen explanation into its source study and store it on its server."""
        from ..export import export_and_store
        from ..framework.settings import DEFAULT_SETTINGS

        name = self.heatmap.currentText()
        if not name or name not in self.viewer.layers:
            self.status.setText("No explanation to send: run one on a scan opened from the PACS.")
            return
        layer = self.viewer.layers[name]
        explanation = explanation_of(layer)
        volume = scan_for(self.viewer, layer)
        if explanation is None or volume is None:
            self.status.setText(f"{name}: its scan is no longer open; open it again to send the map.")
            return
        url = source_url(volume) or self._server()
        if not url:
            self.status.setText("The scan was not opened from a PACS: give the server to send to.")
            return
        percent = DEFAULT_SETTINGS.topk_percent
        folder = tempfile.mkdtemp(prefix="mlmi-send-")

        def work(_token: Any, _report: Any) -> dict[str, Any]:
            try:
                return export_and_store(explanation, volume, folder, url=url, percent=percent)
            finally:  # the files carry the patient's identity: none stays behind
                shutil.rmtree(folder, ignore_errors=True)

        self.jobs.start(work, on_done=self._sent, on_error=self._error, busy_text=f"Sending {name}…")

    def _sent(self, report: dict[str, Any]) -> None:
        from ..export import describe_store

        self.last_store = report
        prefix = "Sent: " if report["status"] == "stored" else "Not sent in full: "
        self.status.setText(prefix + describe_store(report))

    def shutdown(self) -> None:
        """Cancel a running search, retrieval or store and wait for its thread."""
        self.jobs.shutdown()

    def _error(self, exc: BaseException) -> None:
        self.status.setText(f"Error: {describe_error(exc)}")
