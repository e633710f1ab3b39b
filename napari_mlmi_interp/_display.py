"""Start a virtual X display (Xvfb) when none is present, so napari can render headless."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["ensure_display"]


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
