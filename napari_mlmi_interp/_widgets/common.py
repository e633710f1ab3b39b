"""Old home of the panels' shared pieces; they live in :mod:`._widgets.jobs` now (re-exported)."""

from __future__ import annotations

from .jobs import ProgressBridge, wait_while_busy

__all__ = ["ProgressBridge", "wait_while_busy"]
