"""GUI responsiveness and cancel latency of the Explain panel, in a shown napari viewer.

    xvfb-run -a -s "-screen 0 1600x1200x24" python benchmarks/gui.py      # writes docs/benchmarks.md
    xvfb-run -a python benchmarks/gui.py --repeats 1 --out /tmp/gui.md    # a quick look

Run under Xvfb like the GUI tests (software OpenGL). Each figure is measured twice: on the
machine as it is, and with two busy-looping processes (one per core on a 2-core machine) that
compete with the viewer, as on a loaded CI runner. These are the wall-clock figures the tests
do not assert (a busy machine would make such a test fail for the wrong reason); the tests check
the behaviour (the event loop turns while the worker runs, cancel adds no layer, progress is
monotonic).

- **GUI stall**: a 10 ms ``QTimer`` ticks on the GUI thread while the panel runs Integrated
  Gradients (64 steps) on the sample brain with the demo lesion classifier; the stall is the
  longest gap between ticks from the first progress report to the end of the worker (target
  <= 250 ms), and, for context, over the whole run including adding the layers, and with the
  viewer idle for as long (what the machine's scheduling alone does to the timer).
- **Cancel latency, panel**: Integrated Gradients (1000 trapezoid steps) is cancelled with the
  Cancel button after two progress reports; latency = click to the panel being idle again
  (its status says "Cancelled", no layer added). The run stops at the next batch, so the
  latency is about one batch: the batch time is reported beside it.
- **Cancel latency, explain()**: the same run in a thread, ``token.cancel()`` to
  :class:`~napari_mlmi_interp.explain.Cancelled` raised.

The section between the ``gui.py`` markers in ``docs/benchmarks.md`` is replaced (appended the
first time); the rest of the file, written by ``benchmarks/run.py``, is left as it is. The
figures also go to ``docs/benchmarks_gui.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- benchmarks/gui.py: begin (do not edit by hand) -->"
END = "<!-- benchmarks/gui.py: end -->"
#: The target for the longest GUI stall while the model works (ms).
STALL_TARGET_MS = 250.0
TICK_MS = 10
STALL_STEPS = 64
CANCEL_STEPS = 1000
BUDGET_MB = 256


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_until(condition, timeout_s: float = 600.0) -> None:
    """Run the Qt event loop until ``condition()`` holds (checked every 5 ms)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(5)

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise TimeoutError(f"gave up after {timeout_s:.0f} s")


class Session:
    """A shown viewer with the sample brain; one Explain panel per measurement."""

    def __init__(self) -> None:
        import napari

        self.viewer = napari.Viewer(show=True)
        self.viewer.window.resize(1200, 850)
        self.viewer.open_sample("napari-mlmi-interp", "brain_lesion")

    def panel(self, method: str = "integrated_gradients"):
        from napari_mlmi_interp._widgets import ExplainWidget

        widget = ExplainWidget(self.viewer)
        widget.budget.setValue(BUDGET_MB)
        widget.dock = self.viewer.window.add_dock_widget(widget, name="Explain")
        widget.model.setCurrentIndex(widget.model.findData("lesion-classifier"))
        widget.method.setCurrentIndex(widget.method.findData(method))
        widget.target.setCurrentIndex(widget.target.findData("lesion"))
        return widget

    def drop(self, widget) -> None:
        widget.shutdown()
        self.viewer.window.remove_dock_widget(widget.dock)

    def remove_results(self) -> None:
        for layer in [ly for ly in self.viewer.layers if ly.metadata.get("group")]:
            self.viewer.layers.remove(layer)

    def close(self) -> None:
        self.viewer.close()


def measure_stall(session: Session) -> dict[str, float]:
    """Longest gap between GUI timer ticks while the panel runs Integrated Gradients (ms)."""
    from qtpy.QtCore import QTimer

    widget = session.panel()
    widget.param_widgets["n_steps"].setValue(STALL_STEPS)
    ticks: list[float] = []
    reports: list[float] = []
    widget.jobs.bridge.progress.connect(lambda d, t: reports.append(time.perf_counter()))
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    widget.run()
    wait_until(lambda: not widget.jobs.busy)
    worker_end = time.perf_counter()
    wait_until(lambda: not widget.busy)
    idle = time.perf_counter()
    timer.stop()
    if widget.last_result is None or not reports:
        raise RuntimeError(f"the run did not finish: {widget.status.text()}")
    during = [t for t in ticks if reports[0] <= t <= worker_end]
    gaps = [b - a for a, b in zip([reports[0], *during], [*during, worker_end], strict=True)]
    whole = [b - a for a, b in zip([started, *ticks], [*ticks, idle], strict=True)]
    batches = [t for t in ticks if reports[0] <= t <= reports[-1]]
    between = [b - a for a, b in pairwise([reports[0], *batches, reports[-1]])]
    after = [t for t in ticks if reports[-1] <= t <= worker_end]
    tail = [b - a for a, b in pairwise([reports[-1], *after, worker_end])]
    session.drop(widget)
    session.remove_results()
    return {
        "stall_during_ms": 1000 * max(gaps),
        "stall_whole_ms": 1000 * max(whole),
        "stall_batches_ms": 1000 * max(between, default=0.0),
        "stall_after_ms": 1000 * max(tail, default=0.0),
        "run_s": worker_end - started,
        "reports": len(reports),
    }


def measure_idle(seconds: float) -> dict[str, float]:
    """Longest gap between the same timer's ticks with the viewer idle: the machine's own jitter (ms)."""
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    started = time.perf_counter()
    timer.start()
    wait_until(lambda: time.perf_counter() - started >= seconds)
    timer.stop()
    return {"stall_idle_ms": 1000 * max(b - a for a, b in pairwise([started, *ticks]))}


def measure_panel_cancel(session: Session) -> dict[str, float]:
    """Cancel button to idle panel (ms), and the time between progress reports (one batch)."""
    widget = session.panel()
    widget.param_widgets["n_steps"].setValue(CANCEL_STEPS)
    widget.param_widgets["method"].setCurrentText("riemann_trapezoid")
    reports: list[float] = []
    widget.jobs.bridge.progress.connect(lambda d, t: reports.append(time.perf_counter()))
    n_layers = len(session.viewer.layers)
    widget.run()
    wait_until(lambda: len(reports) >= 3)
    clicked = time.perf_counter()
    widget.cancel_button.click()
    wait_until(lambda: not widget.busy)
    latency = time.perf_counter() - clicked
    if "Cancelled" not in widget.status.text() or len(session.viewer.layers) != n_layers:
        raise RuntimeError(f"cancel did not work as the tests expect: {widget.status.text()}")
    before = [t for t in reports if t <= clicked]
    steps = [b - a for a, b in pairwise(before[1:])]  # after the first batch
    batch = statistics.median(steps) if steps else float("nan")
    session.drop(widget)
    return {"cancel_panel_ms": 1000 * latency, "batch_ms": 1000 * batch}


def measure_engine_cancel() -> dict[str, float]:
    """``token.cancel()`` to :class:`Cancelled` raised in the worker thread (ms)."""
    from napari_mlmi_interp.explain import Cancelled, CancelToken, explain
    from napari_mlmi_interp.models import builtin_models, load_model
    from napari_mlmi_interp.sample import make_sample

    spec = next(s for s in builtin_models() if s.name == "lesion-classifier")
    model, scan = load_model(spec), make_sample().scan
    token, started, state = CancelToken(), threading.Event(), {}

    def progress(done: int, total: int) -> None:
        state.setdefault("reports", 0)
        state["reports"] += 1
        if state["reports"] >= 3:
            started.set()

    def work() -> None:
        try:
            explain(
                scan,
                model,
                "integrated_gradients",
                target="lesion",
                params={"n_steps": CANCEL_STEPS, "method": "riemann_trapezoid"},
                progress=progress,
                cancel=token,
                memory_budget_mb=BUDGET_MB,
            )
        except Cancelled:
            state["stopped"] = time.perf_counter()

    thread = threading.Thread(target=work)
    thread.start()
    started.wait(600)
    cancelled = time.perf_counter()
    token.cancel()
    thread.join(600)
    if "stopped" not in state:
        raise RuntimeError("explain() was not cancelled")
    return {"cancel_engine_ms": 1000 * (state["stopped"] - cancelled)}


def measure(repeats: int) -> dict[str, Any]:
    session = Session()
    try:
        measure_stall(session)  # warm-up: model load, first layer creation, shader compilation
        runs = []
        for i in range(repeats):
            row = measure_stall(session)
            row.update(measure_idle(row["run_s"]))  # as long as the run, nothing running
            row.update(measure_panel_cancel(session))
            row.update(measure_engine_cancel())
            log(f"  repeat {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()))
            runs.append(row)
    finally:
        session.close()
    return {"runs": runs}


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning a core each (the load of a busy CI machine)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def summary(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "worst": max(values)}


FIGURES = [
    (
        "stall_during_ms",
        f"GUI stall during the run (IG {STALL_STEPS} steps, first progress report to the worker's end; "
        f"longest gap between {TICK_MS} ms ticks)",
        "ms",
    ),
    ("stall_batches_ms", "of which: between the model's batches", "ms"),
    (
        "stall_after_ms",
        "of which: after the last batch (mapping back, making the layers' data, adding the first layer)",
        "ms",
    ),
    ("stall_whole_ms", "GUI stall over the whole run, adding the layers included (context)", "ms"),
    ("stall_idle_ms", "the same timer with the viewer idle for as long (the machine's own jitter)", "ms"),
    (
        "cancel_panel_ms",
        f"cancel latency, Explain panel (IG {CANCEL_STEPS} steps: Cancel click to idle, no layer)",
        "ms",
    ),
    ("batch_ms", "one batch of that run (the bound on the cancel latency)", "ms"),
    ("cancel_engine_ms", "cancel latency, explain() in a thread (token.cancel() to Cancelled)", "ms"),
    ("run_s", f"IG {STALL_STEPS} steps, whole run in the panel (context)", "s"),
]


def section(results: dict[str, Any]) -> str:
    conds = results["conditions"]
    head = " | ".join(f"{c['label']}: median / worst" for c in conds)
    lines = [
        BEGIN,
        "## GUI responsiveness and cancel latency",
        "",
        "Made by `xvfb-run -a python benchmarks/gui.py` (see its docstring): the Explain panel in a shown "
        "napari viewer under Xvfb, on the sample brain with the demo lesion classifier, "
        f"{results['repeats']} repeat(s) after a warm-up, on the machine as it is and with "
        f"{results['busy']} busy-looping processes beside it. Machine: {results['machine']}. "
        "The tests check the behaviour only (the event loop turns while the worker runs; cancel adds "
        "no layer; progress is monotonic): a wall-clock limit would fail on a busy machine for the "
        "wrong reason.",
        "",
        f"| figure | {head} | target | met |",
        "|---|" + "---|" * len(conds) + "---|---|",
    ]
    for key, label, unit in FIGURES:
        cells = []
        for c in conds:
            s = c["summary"][key]
            fmt = ".2f" if unit == "s" else ".0f"
            cells.append(f"{s['median']:{fmt}} / {s['worst']:{fmt}} {unit}")
        target, met = "—", "—"
        if key == "stall_during_ms":
            target = f"<= {STALL_TARGET_MS:.0f} ms"
            met = " / ".join(
                ("yes" if c["summary"][key]["worst"] <= STALL_TARGET_MS else "no") for c in conds
            )
        elif key == "cancel_panel_ms":
            target = "about one batch"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {met} |")
    loads = ", ".join(f"{c['label']} {c['load_before']:.1f} -> {c['load_after']:.1f}" for c in conds)
    lines += ["", f"Load average (1 min) before and after: {loads}.", END, ""]
    return "\n".join(lines)


def write_section(out: Path, text: str) -> None:
    """Replace the gui.py section of ``out`` (or append it), leaving everything else as it is."""
    old = out.read_text() if out.exists() else ""
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        new = before + text + after
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + text
    out.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--busy", type=int, default=os.cpu_count() or 2, help="busy processes in the loaded run"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_API", "pyqt6")
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 - napari reuses it
    started = time.time()
    conditions = []
    for label, n_busy in (("as is", 0), (f"{args.busy} busy", args.busy)):
        log(f"{label}: measuring")
        procs = busy_processes(n_busy)
        try:
            time.sleep(1.0 if n_busy else 0.0)
            load_before = os.getloadavg()[0]
            measured = measure(args.repeats)
            load_after = os.getloadavg()[0]
        finally:
            for p in procs:
                p.kill()
                p.wait()
        runs = measured["runs"]
        conditions.append(
            {
                "label": label,
                "busy_processes": n_busy,
                "load_before": load_before,
                "load_after": load_after,
                "runs": runs,
                "summary": {key: summary(runs, key) for key, _l, _u in FIGURES},
            }
        )
    import torch

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, QT_API={os.environ.get('QT_API')}, "
        f"display {os.environ.get('DISPLAY', 'none')}",
        "repeats": args.repeats,
        "busy": args.busy,
        "stall_target_ms": STALL_TARGET_MS,
        "conditions": conditions,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_section(args.out, section(results))
    json_path = args.out.with_name(args.out.stem + "_gui.json")
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out} and {json_path} in {time.time() - started:.0f} s")
    for c in conditions:
        worst = c["summary"]["stall_during_ms"]["worst"]
        log(f"{c['label']}: worst stall {worst:.0f} ms ({'met' if worst <= STALL_TARGET_MS else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
