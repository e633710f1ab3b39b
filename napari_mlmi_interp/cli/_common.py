"""What every command shares: the one-line error, warnings, loading, output folders, progress."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlmiError
from ..io import Volume, load, load_warnings

__all__ = ["QUIET_HELP", "CliError", "add_figure_settings"]

QUIET_HELP = "no progress bar (there is none when stderr is not a terminal)"


class CliError(MlmiError):
    """A user-facing error: printed as one line, exit status 2."""


def _warn(messages: Any) -> None:
    """Each message as one ``warning: ...`` line on stderr."""
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def _load(path: str) -> list[Volume]:
    """:func:`load`, with every load warning said once (per series; a folder's note once).

    A DICOMweb URL's retrieval shows a progress bar in instances when stderr is a terminal.
    """
    from ..io import is_dicomweb_url

    if is_dicomweb_url(path):
        from ..io.dicomweb import load_url

        bar = _Bar(_stderr_is_terminal(), "retrieve", "instance")
        try:
            volumes = load_url(path, progress=bar)
        finally:
            bar.close()
    else:
        volumes = load(path)
    _warn(load_warnings(volumes))
    return volumes


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def _out_dir(path: str, flag: str) -> Path:
    """``path`` as an output folder; an existing file there is a clear error, not Errno 17."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CliError(f"{flag} must be a folder, got the existing file {out}")
    return out


def _progress_on(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal only (stderr a TTY), and not with --quiet."""
    if getattr(args, "quiet", False):
        return False
    return _stderr_is_terminal()


class _Bar:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (nothing when off)."""

    def __init__(self, on: bool, desc: str, unit: str) -> None:
        self.on, self.desc, self.unit = on, desc, unit
        self.bar: Any = None

    def __call__(self, done: int, total: int, postfix: str | None = None) -> None:
        if not self.on:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        if total != self.bar.total:
            self.bar.total = total
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(values: Any, digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in np.ravel(values)) + ")"


def add_figure_settings(p: argparse.ArgumentParser, percent_use: str) -> None:
    """``--percent`` and ``--tolerance-mm``, defaulting to the shared figure settings.

    One top-k % and one tolerance (mm) for the sidebar, ``evaluate``, ``batch`` and the report.
    """
    from ..framework.settings import DEFAULT_SETTINGS as figure

    p.add_argument(
        "--percent",
        type=float,
        default=figure.topk_percent,
        help=f"k of the top-k %% region {percent_use} (default {figure.topk_percent:g})",
    )
    p.add_argument(
        "--tolerance-mm",
        type=float,
        default=figure.tolerance_mm,
        help="pointing-game tolerance, also the peak-to-region pass limit "
        f"(default {figure.tolerance_mm:g} mm)",
    )
