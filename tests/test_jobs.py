"""The panels' one job helper: work off the GUI thread, progress, Cancel, errors, busy state."""

from __future__ import annotations

import threading

import pytest

from napari_mlmi_interp.errors import InputError

pytestmark = pytest.mark.gui

PATIENT_MS = 120_000


@pytest.fixture
def panel(qtbot):
    from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

    from napari_mlmi_interp._widgets.jobs import JobRunner

    owner = QWidget()
    qtbot.addWidget(owner)
    bar, cancel, status = QProgressBar(owner), QPushButton("Cancel", owner), QLabel(owner)
    runner = JobRunner(owner, progress=bar, cancel_button=cancel, status=status)
    yield runner, bar, cancel, status
    runner.shutdown(timeout_s=PATIENT_MS / 1000)


def _idle(qtbot, runner):
    qtbot.waitUntil(lambda: not runner.busy, timeout=PATIENT_MS)


def test_work_runs_off_the_gui_thread_and_reports_progress(panel, qtbot):
    runner, bar, cancel, status = panel
    got, events, seen, busy = {}, [], [], []
    go = threading.Event()
    runner.progressed.connect(lambda d, t: seen.append((d, t)))
    runner.busy_changed.connect(busy.append)

    def work(token, report):
        got["thread"] = threading.get_ident()
        go.wait(PATIENT_MS / 1000)
        for i in range(1, 4):
            report(i, 3)
        return "result"

    runner.start(
        work,
        on_done=lambda r: events.append(("done", r, threading.get_ident())),
        on_finished=lambda: events.append(("finished",)),
        busy_text="Working hard…",
    )
    assert runner.busy and cancel.isEnabled() and status.text() == "Working hard…"
    assert bar.maximum() == 0  # indeterminate until the first report
    go.set()
    _idle(qtbot, runner)
    assert got["thread"] != threading.get_ident()
    assert events == [("done", "result", threading.get_ident()), ("finished",)]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert (bar.value(), bar.maximum()) == (1, 1)
    assert busy == [True, False] and not cancel.isEnabled()


def test_cancel_stops_the_job_and_drops_its_result(panel, qtbot):
    runner, bar, cancel, status = panel
    events, started = [], threading.Event()

    def work(token, report):
        started.set()
        while not token.cancelled:  # a batch loop that checks its token
            threading.Event().wait(0.01)
        return "too late"

    runner.start(work, on_done=events.append, on_error=events.append)
    assert started.wait(PATIENT_MS / 1000)
    cancel.click()
    _idle(qtbot, runner)
    assert events == [] and status.text() == "Cancelled."
    assert bar.value() == 0 and not cancel.isEnabled()


def test_cancelled_raised_by_the_work_is_no_error(panel, qtbot):
    from napari_mlmi_interp.explain import Cancelled

    runner, _bar, _cancel, status = panel
    errors = []

    def work(token, report):
        raise Cancelled()

    runner.start(work, on_done=errors.append, on_error=errors.append)
    _idle(qtbot, runner)
    assert errors == [] and status.text() == "Cancelled."


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            InputError("top-k percent must be in (0, 100], got 0"),
            "Error: top-k percent must be in (0, 100], got 0",
        ),
        (RuntimeError("boom"), "Error: internal error, please report: RuntimeError: boom"),
    ],
)
def test_errors_reach_the_status_line(panel, qtbot, exc, said):
    runner, _bar, _cancel, status = panel

    def work(token, report):
        raise exc

    runner.start(work, on_done=lambda r: None)
    _idle(qtbot, runner)
    assert status.text() == said


def test_an_error_handler_gets_the_exception(panel, qtbot):
    runner, _bar, _cancel, status = panel
    caught, finished = [], []

    def work(token, report):
        raise KeyError("gone")

    runner.start(work, on_done=lambda r: None, on_error=caught.append, on_finished=lambda: finished.append(1))
    _idle(qtbot, runner)
    assert len(caught) == 1 and isinstance(caught[0], KeyError) and finished == [1]
    assert "gone" not in status.text()  # the handler, not the runner, says what went wrong


def test_one_job_at_a_time(panel, qtbot):
    runner, *_ = panel
    go, ran = threading.Event(), []

    def first(token, report):
        go.wait(PATIENT_MS / 1000)
        ran.append("first")
        return 1

    runner.start(first, on_done=lambda r: None)
    worker = runner.worker
    runner.start(lambda token, report: ran.append("second"), on_done=lambda r: None)  # ignored
    assert runner.worker is worker
    go.set()
    _idle(qtbot, runner)
    assert ran == ["first"] and runner.worker is None and runner.token is None


def test_shutdown_cancels_and_waits(panel):
    runner, *_ = panel
    started = threading.Event()

    def work(token, report):
        started.set()
        while not token.cancelled:
            threading.Event().wait(0.01)

    runner.start(work, on_done=lambda r: None)
    assert started.wait(PATIENT_MS / 1000)
    runner.shutdown(timeout_s=PATIENT_MS / 1000)
    assert not runner.busy


def test_describe_error():
    from napari_mlmi_interp._widgets.jobs import describe_error
    from napari_mlmi_interp.models import ModelError

    assert describe_error(ModelError("no model named 'x'")) == "no model named 'x'"
    assert describe_error(ZeroDivisionError("division by zero")) == (
        "internal error, please report: ZeroDivisionError: division by zero"
    )


def test_the_collector_leaves_old_objects_alone_only_while_a_job_runs(panel, qtbot):
    """``gc.freeze`` while any job runs (two runners overlapping), undone after done, cancel and error."""
    import gc

    from qtpy.QtWidgets import QWidget

    from napari_mlmi_interp._widgets.jobs import JobRunner

    runner = panel[0]
    other_owner = QWidget()
    qtbot.addWidget(other_owner)
    other = JobRunner(other_owner)
    assert gc.get_freeze_count() == 0
    seen = []
    runner.start(lambda token, report: seen.append(gc.get_freeze_count()) or "ok", on_done=lambda r: None)
    _idle(qtbot, runner)
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    release_error, release_cancel = threading.Event(), threading.Event()

    def failing(token, report):
        seen.append(gc.get_freeze_count())
        release_error.wait(PATIENT_MS / 1000)
        raise InputError("a readable failure")

    def cancelled(token, report):
        seen.append(gc.get_freeze_count())
        release_cancel.wait(PATIENT_MS / 1000)

    errors = []
    runner.start(failing, on_done=lambda r: None, on_error=errors.append)
    other.start(cancelled, on_done=lambda r: None)
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=PATIENT_MS)
    release_error.set()
    _idle(qtbot, runner)
    assert errors and gc.get_freeze_count() > 0  # the other job still runs: still frozen
    other.cancel()
    release_cancel.set()
    _idle(qtbot, other)
    assert gc.get_freeze_count() == 0  # nothing stays frozen once both are done
    assert all(n > 0 for n in seen)
