"""Pieces the dock widgets share: progress from worker threads, waiting for work to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

__all__ = ["ProgressBridge", "wait_while_busy"]


class ProgressBridge(QObject):
    """Carries ``progress(done, total)`` from a worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int)

    def reporter(self, token: Any) -> Callable[[int, int], None]:
        """A progress callback for the worker; it cancels ``token`` once the widget is gone."""

        def report(done: int, total: int) -> None:
            try:
                self.progress.emit(int(done), int(total))
            except RuntimeError:  # the widget is gone (napari closed): stop the work
                token.cancel()

        return report


def wait_while_busy(widget: Any, timeout_s: float) -> None:
    """Process Qt events until ``widget.busy`` is false or ``timeout_s`` passed."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while widget.busy and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
