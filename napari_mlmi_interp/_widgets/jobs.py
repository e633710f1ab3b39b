"""One job at a time, off the GUI thread, with progress, Cancel and a busy state.

Every panel runs its long work (a model loading, an explanation, evidence, a reader-study
case) through a :class:`JobRunner`: the work runs in a napari worker thread
(:class:`napari.qt.threading.FunctionWorker`, what ``create_worker`` makes of a function),
reports ``(done, total)`` through a queued Qt signal (:class:`ProgressBridge`) to the
panel's progress bar, stops at its next batch when Cancel is pressed
(:class:`~napari_mlmi_interp.explain.CancelToken`), and hands its result back on the GUI thread.

While any job runs, Python's garbage collector leaves the objects that existed when it
started alone (``gc.freeze``; ``gc.unfreeze`` once the last job has finished). A full
collection holds the interpreter lock for as long as it takes to scan every object: with
napari, Qt and torch loaded that was 110-190 ms, three to six times in one Integrated
Gradients run of the Explain panel, each a freeze of the viewer (measured under Xvfb on
2 cores). Frozen, the collections during the run scan only what the run made (under 20 ms);
nothing is leaked, the frozen objects are collectable again once the jobs are done.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from ..errors import MlmiError
from ..explain import Cancelled, CancelToken

__all__ = ["JobRunner", "ProgressBridge", "describe_error", "wait_while_busy"]

#: ``work(token, report)``: the job, run in a worker thread.
Work = Callable[[CancelToken, Callable[[int, int], None]], Any]


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


#: Jobs running now, over all panels (the garbage collector's freeze holds while any does).
_running = 0


def _job_started() -> None:
    global _running
    if _running == 0:
        gc.freeze()
    _running += 1


def _job_ended() -> None:
    global _running
    _running = max(0, _running - 1)
    if _running == 0:
        gc.unfreeze()


def wait_while_busy(widget: Any, timeout_s: float) -> None:
    """Process Qt events until ``widget.busy`` is false or ``timeout_s`` (seconds) passed."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while widget.busy and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


def describe_error(exc: BaseException) -> str:
    """What a status line says about a failed job.

    An :class:`~napari_mlmi_interp.errors.MlmiError` (the user can act on it) is its message;
    anything else is a bug: ``internal error, please report: <type>: <message>``.
    """
    if isinstance(exc, MlmiError):
        return str(exc)
    return f"internal error, please report: {type(exc).__name__}: {exc}"


class JobRunner(QObject):
    """Runs one job at a time for a panel, off the GUI thread.

    Parameters
    ----------
    owner : QWidget
        The panel (the runner's Qt parent).
    progress : QProgressBar, optional
        Shows ``done / total``; busy (indeterminate) until the first report, reset at the end.
    cancel_button : QPushButton, optional
        Wired to :meth:`cancel`; enabled only while a job runs.
    status : QLabel, optional
        Shows ``busy_text`` while running, "Cancelled." or the error at the end.

    Signals
    -------
    busy_changed(bool)
        True when a job starts, False once it finished (after ``on_done`` / ``on_error``).
    progressed(int, int)
        Every ``(done, total)`` the job reported, on the GUI thread.

    Notes
    -----
    One job at a time: :meth:`start` while :attr:`busy` does nothing (a second click on
    Run is ignored). A job whose token was cancelled counts as cancelled even when its work
    returned: ``on_done`` is not called.
    """

    busy_changed = Signal(bool)
    progressed = Signal(int, int)

    #: What the status line says after a cancelled job.
    cancelled_text = "Cancelled."

    def __init__(
        self,
        owner: QWidget,
        *,
        progress: QProgressBar | None = None,
        cancel_button: QPushButton | None = None,
        status: QLabel | None = None,
    ) -> None:
        super().__init__(owner)
        self.owner = owner
        self.progress_bar = progress
        self.cancel_button = cancel_button
        self.status = status
        self._worker = None
        self._token: CancelToken | None = None
        #: the queued progress signal: a job's ``report`` emits ``bridge.progress``
        self.bridge = ProgressBridge(self)
        self.bridge.progress.connect(self._on_progress)
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(self.cancel)

    @property
    def busy(self) -> bool:
        """Whether a job is running (its results not yet handed back)."""
        return self._worker is not None

    @property
    def worker(self) -> Any:
        """The running job's napari worker (None when idle)."""
        return self._worker

    @property
    def token(self) -> CancelToken | None:
        """The running job's cancel token (None when idle)."""
        return self._token

    def start(
        self,
        work: Work,
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        busy_text: str = "Working…",
    ) -> None:
        """Run ``work(token, report)`` in a worker thread; ignored while :attr:`busy`.

        Parameters
        ----------
        work : callable
            ``work(token, report)``: check ``token`` (or pass it on as ``cancel=``) and call
            ``report(done, total)``; its return value goes to ``on_done``.
        on_done : callable
            Called on the GUI thread with the result (not when the job was cancelled).
        on_error : callable, optional
            Called with the exception (not for :class:`~napari_mlmi_interp.explain.Cancelled`);
            default: the status line shows :func:`describe_error`.
        on_finished : callable, optional
            Called last, on success, error and cancel alike.
        busy_text : str
            The status line while the job runs.
        """
        if self.busy:
            return
        token = CancelToken()
        report = self.bridge.reporter(token)
        worker = _worker_for(lambda: work(token, report))
        worker.returned.connect(lambda result: self._returned(token, result, on_done))
        worker.errored.connect(lambda exc: self._errored(exc, on_error))
        worker.finished.connect(lambda: self._finished(on_finished))
        self._worker, self._token = worker, token
        self._set_busy_view(busy_text)
        self.busy_changed.emit(True)
        _job_started()
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop (at its next check of the token); no-op when idle."""
        if self._token is not None and not self._token.cancelled:
            self._token.cancel()
            if self.status is not None:
                self.status.setText("Cancelling…")

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel the running job and wait up to ``timeout_s`` seconds for its thread."""
        self.cancel()
        wait_while_busy(self, timeout_s)

    # -- the worker's signals (GUI thread) ---------------------------------------------------------
    def _set_busy_view(self, busy_text: str) -> None:
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, 0)  # indeterminate until the first report
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(True)
        if self.status is not None:
            self.status.setText(busy_text)

    def _on_progress(self, done: int, total: int) -> None:
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, max(1, total))
            self.progress_bar.setValue(min(done, total))
        self.progressed.emit(done, total)

    def _returned(self, token: CancelToken, result: Any, on_done: Callable[[Any], None]) -> None:
        if token.cancelled:
            self._show_cancelled()
            return
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1)
        on_done(result)

    def _errored(self, exc: BaseException, on_error: Callable[[BaseException], None] | None) -> None:
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        if isinstance(exc, Cancelled):
            self._show_cancelled()
        elif on_error is not None:
            on_error(exc)
        elif self.status is not None:
            self.status.setText(f"Error: {describe_error(exc)}")

    def _show_cancelled(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        if self.status is not None:
            self.status.setText(self.cancelled_text)

    def _finished(self, on_finished: Callable[[], None] | None) -> None:
        _job_ended()
        self._worker = None
        self._token = None
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(False)
        if self.progress_bar is not None and self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        try:
            if on_finished is not None:
                on_finished()
        finally:
            self.busy_changed.emit(False)


def _worker_for(function: Callable[[], Any]) -> Any:
    """A napari worker (not yet started) that runs ``function`` in its own thread.

    A :class:`~napari.qt.threading.FunctionWorker`, what ``create_worker`` builds for a plain
    function, made directly: ``create_worker`` re-raises a worker's exception on the GUI
    thread unless its private ``_ignore_errors`` or ``_connect`` argument is passed
    (napari/napari#1210), while a JobRunner reports errors itself through ``errored``.
    """
    from napari.qt.threading import FunctionWorker

    return FunctionWorker(function)
