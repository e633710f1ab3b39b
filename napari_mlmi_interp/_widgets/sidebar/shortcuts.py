"""Keyboard shortcuts of the framework sidebar, bound on the viewer (napari's ``bind_key``).

Alt+Right / Alt+Left: next / previous explanation; Alt+O: show or hide its heatmap;
Alt+1 … Alt+5: rate the next element without a rating (in the order of the cards), Alt+0:
rate it N/A. Listed in the sidebar's tooltip (:func:`shortcuts_help`).
"""

from __future__ import annotations

from typing import Any

from .cards import RATING_CHOICES

__all__ = ["SHORTCUTS", "bind_shortcuts", "next_unrated", "shortcuts_help"]

SHORTCUTS = (
    ("Alt+Right", "next explanation"),
    ("Alt+Left", "previous explanation"),
    ("Alt+O", "show / hide the explanation's heatmap"),
    ("Alt+1 … Alt+5", "rate the next unrated element 1 to 5"),
    ("Alt+0", "rate it N/A"),
)


def shortcuts_help() -> str:
    """The shortcuts, one per line, for a tooltip."""
    return "Keyboard:\n" + "\n".join(f"{keys}: {what}" for keys, what in SHORTCUTS)


def next_unrated(sidebar: Any) -> str | None:
    """The first shown element card without a rating yet, or None."""
    for element, card in sidebar.cards.items():
        if card.isVisibleTo(sidebar) and card.rating.currentData() == "unset":
            return element
    return None


def _step(sidebar: Any, delta: int) -> None:
    combo = sidebar.explanation
    if combo.count():
        combo.setCurrentIndex((combo.currentIndex() + delta) % combo.count())


def _toggle_heatmap(sidebar: Any) -> None:
    current = sidebar.session.current
    layer = getattr(current, "source", None) if current is not None else None
    if layer is not None:
        layer.visible = not layer.visible


def _rate(sidebar: Any, rating: int | None) -> None:
    element = next_unrated(sidebar)
    if element is None or sidebar.session.current is None:
        return
    combo = sidebar.cards[element].rating
    combo.setCurrentIndex(next(i for i, (_t, v) in enumerate(RATING_CHOICES) if v == rating and i > 0))


def bind_shortcuts(sidebar: Any) -> None:
    """Bind the shortcuts on the sidebar's viewer (replacing earlier bindings of the same keys)."""
    viewer = sidebar.viewer
    viewer.bind_key("Alt-Right", lambda _v: _step(sidebar, 1), overwrite=True)
    viewer.bind_key("Alt-Left", lambda _v: _step(sidebar, -1), overwrite=True)
    viewer.bind_key("Alt-O", lambda _v: _toggle_heatmap(sidebar), overwrite=True)
    for value in range(1, 6):
        viewer.bind_key(f"Alt-{value}", lambda _v, r=value: _rate(sidebar, r), overwrite=True)
    viewer.bind_key("Alt-0", lambda _v: _rate(sidebar, None), overwrite=True)
