"""An assessment: the figures of the five elements, the curves behind them, their settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...vocabulary import ELEMENTS
from .figures import Figure, jsonable

__all__ = ["Assessment"]


@dataclass
class Assessment:
    """Figures for the five elements, plus the curves behind them."""

    figures: dict[str, Figure] = field(default_factory=dict)
    curves: dict[str, dict[str, list]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def by_element(self) -> dict[str, list[Figure]]:
        out: dict[str, list[Figure]] = {e: [] for e in ELEMENTS}
        for f in self.figures.values():
            out[f.element].append(f)
        return out

    def __getitem__(self, key: str) -> Figure:
        return self.figures[key]

    def __contains__(self, key: str) -> bool:
        return key in self.figures

    def merged(self, other: Assessment) -> Assessment:
        return Assessment(
            {**self.figures, **other.figures},
            {**self.curves, **other.curves},
            {**self.settings, **other.settings},
        )

    def flagged(self, element: str) -> bool:
        """Whether any figure of ``element`` fails its band."""
        return any(f.band == "fail" for f in self.by_element()[element])

    def to_dict(self) -> dict[str, Any]:
        """``{element: {figure: value}}`` plus ``bands`` and ``curves`` (JSON-ready)."""
        out: dict[str, Any] = {e: {} for e in ELEMENTS}
        for key, f in self.figures.items():
            out[f.element][key] = jsonable(f.value)
        out["bands"] = {key: f.band for key, f in self.figures.items()}
        out["curves"] = jsonable(self.curves)
        out["settings"] = jsonable(self.settings)
        return out
