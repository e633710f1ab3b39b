"""The step-by-step guide of Wang et al. (IEEE Access 2024) as data: goal -> elements -> methods.

1. **Goal**: the task (classification, detection, segmentation), who reads the explanation
   (clinician, developer, researcher) and why (verify the model, build trust, debug, discover).
2. **Elements**: which of the five elements that goal needs (:func:`elements_for`).
3. **Methods**: attribution methods that serve those elements, cheapest first among equally
   relevant ones (:func:`recommended_methods`).

The goal-to-elements table is a starting point a study can override (``Goal.elements``); it
follows the paper's reasoning: a clinician acting on a finding needs to see *where*, to
recognise *what*, to tie it to anatomy and to know what to do; a developer debugging a model
needs where and whether the map is faithful; a researcher compares all five.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..explain.methods import Method, list_methods
from ..vocabulary import ELEMENTS

__all__ = [
    "ELEMENTS",
    "ELEMENT_INFO",
    "PURPOSES",
    "READERS",
    "TASKS",
    "Goal",
    "elements_for",
    "recommended_methods",
]

TASKS = ("classification", "detection", "segmentation")
READERS = ("clinician", "developer", "researcher")
PURPOSES = ("verify", "trust", "debug", "discover")


@dataclass(frozen=True)
class ElementInfo:
    """One element: its title, the question put to the reader, and a one-sentence definition."""

    key: str
    title: str
    question: str
    definition: str


ELEMENT_INFO: dict[str, ElementInfo] = {
    e.key: e
    for e in [
        ElementInfo(
            "localization",
            "Localization",
            "Is the evidence where the finding is?",
            "Whether the explanation points at the region that carries the finding, measured "
            "against a reference region (drawn or from a mask) in millimetres.",
        ),
        ElementInfo(
            "visual_recognizability",
            "Visual recognizability",
            "Would a reader recognise the highlighted pattern?",
            "Whether the highlighted evidence forms a compact, readable pattern (few blobs, "
            "sparse) rather than scattered specks.",
        ),
        ElementInfo(
            "physical_attribution",
            "Physical attribution",
            "Does it tie to physical or anatomical quantities?",
            "Where the evidence lies in patient coordinates, how large it is, what tissue "
            "values it covers and which anatomical structures hold it.",
        ),
        ElementInfo(
            "model_transparency",
            "Model transparency",
            "Do we know how the model decides, and is the map faithful to it?",
            "Whether the model is inherently interpretable and whether the map reflects the "
            "model (deletion/insertion, parameter randomisation, infidelity) rather than the image.",
        ),
        ElementInfo(
            "actionability",
            "Actionability",
            "Can someone act on it?",
            "Whether removing the attributed region changes the decision, how stable the "
            "prediction is, and what the reader decides to do.",
        ),
    ]
}

_BY_READER = {
    "clinician": {"localization", "visual_recognizability", "physical_attribution", "actionability"},
    "developer": {"localization", "model_transparency"},
    "researcher": set(ELEMENTS),
}
_BY_PURPOSE = {
    "verify": {"localization", "model_transparency"},
    "trust": {"model_transparency", "visual_recognizability", "actionability"},
    "debug": {"model_transparency", "localization", "physical_attribution"},
    "discover": {"visual_recognizability", "physical_attribution"},
}


def elements_for(reader: str, purpose: str) -> tuple[str, ...]:
    """The elements a (reader, purpose) goal needs, in the framework's order."""
    if reader not in _BY_READER:
        raise InputError(f"reader must be one of {', '.join(READERS)}, got {reader!r}")
    if purpose not in _BY_PURPOSE:
        raise InputError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    wanted = _BY_READER[reader] | _BY_PURPOSE[purpose]
    return tuple(e for e in ELEMENTS if e in wanted)


@dataclass
class Goal:
    """Step 1 of the guide: task, reader and purpose; ``elements`` defaults from them."""

    task: str = "classification"
    reader: str = "clinician"
    purpose: str = "verify"
    elements: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not self.elements:
            self.elements = elements_for(self.reader, self.purpose)
        unknown = set(self.elements) - set(ELEMENTS)
        if unknown:
            raise InputError(f"unknown elements {sorted(unknown)}; elements are {', '.join(ELEMENTS)}")
        self.elements = tuple(e for e in ELEMENTS if e in self.elements)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "reader": self.reader,
            "purpose": self.purpose,
            "elements": list(self.elements),
        }


def recommended_methods(
    elements: tuple[str, ...] | list[str], *, has_layer: bool = True, shape: tuple[int, ...] | None = None
) -> list[tuple[Method, tuple[str, ...], int]]:
    """Methods serving any of ``elements``: ``(method, elements served, forward passes)``.

    Ordered by how many of the wanted elements a method serves (most first), then by its
    forward passes on ``shape`` (cheapest first; default 64^3). Layer methods (Grad-CAM)
    are left out when the model declares no layer.
    """
    shape = tuple(shape or (64, 64, 64))
    out = []
    for m in list_methods(elements=tuple(elements)):
        if m.needs_layer and not has_layer:
            continue
        served = tuple(e for e in ELEMENTS if e in m.elements and e in elements)
        forwards = int(m.cost(dict(m.params), shape)[0])
        out.append((m, served, forwards))
    out.sort(key=lambda t: (-len(t[1]), t[2], t[0].title))
    return out
