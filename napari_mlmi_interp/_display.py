"""What napari needs to show a window: a Qt binding, and an X display (Xvfb when headless)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["QT_BINDINGS", "ensure_display", "missing_qt_binding"]

#: The Qt bindings qtpy (and so napari) can use; the plugin depends on none of them (napari
#: convention), the ``[viewer]`` extra installs PyQt6.
QT_BINDINGS = ("PyQt6", "PySide6", "PyQt5", "PySide2")

#: The one command that brings a binding, named in the error when none is installed.
VIEWER_INSTALL = "pip install 'napari-mlmi-interp[viewer]'  (or: pip install 'napari[pyqt6]')"


def missing_qt_binding() -> str | None:
    """None when a Qt binding is importable, else one sentence naming the pip command.

    Checked before napari is imported, so a machine without a binding gets this sentence
    instead of qtpy's "No Qt bindings could be found".
    """
    if any(importlib.util.find_spec(name) is not None for name in QT_BINDINGS):
        return None
    return (
        f"napari needs a Qt binding ({', '.join(QT_BINDINGS)}) and none is installed; "
        f"install one with: {VIEWER_INSTALL}"
    )


def ensure_display(*, force_virtual: bool = False) -> str | None:
    """Make sure ``$DISPLAY`` points at an X server; start Xvfb if needed.

    Returns
    -------
    str or None
        The display in use (e.g. ``":99"``), or None when there is none and Xvfb is not
        installed (napari would then fail to create an OpenGL context).
    """
    if os.environ.get("DISPLAY") and not force_virtual:
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None
    for number in range(99, 140):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        proc = subprocess.Popen(
            [xvfb, f":{number}", "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            atexit.register(proc.terminate)
            os.environ["DISPLAY"] = f":{number}"
            os.environ.pop("WAYLAND_DISPLAY", None)
            os.environ["QT_QPA_PLATFORM"] = "xcb"
            return os.environ["DISPLAY"]
    return None
