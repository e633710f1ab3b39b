"""The step-by-step guide of Wang et al. (IEEE Access 2024) as data: goal -> elements -> methods.

1. **Goal**: the task (classification, detection, segmentation), who reads the explanation
   (clinician, developer, researcher) and why (verify the model, build trust, debug, discover).
2. **Elements**: which of the five elements that goal needs (:func:`elements_for`).
3. **Methods**: attribution methods that serve those elements, filtered and ordered by their
   estimated time on this scan on this machine (:func:`recommended_methods`, from one
   measured pass: :mod:`napari_mlmi_interp.explain.timing`).

The goal-to-elements table is a starting point a study can override (``Goal.elements``); it
follows the paper's reasoning: a clinician acting on a finding needs to see *where*, to
recognise *what*, to tie it to anatomy and to know what to do; a developer debugging a model
needs where and whether the map is faithful; a researcher compares all five.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..explain.methods import Method, list_methods
from ..explain.timing import Estimate, PassTiming, estimate, known_timing, region_box_on_grid
from ..vocabulary import ELEMENTS

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AUTO_TIMING_VOXELS",
    "DEFAULT_TIME_LIMIT_MIN",
    "ELEMENTS",
    "ELEMENT_INFO",
    "MAX_PASSES",
    "PURPOSES",
    "READERS",
    "TASKS",
    "Goal",
    "Recommendation",
    "elements_for",
    "recommended_methods",
    "scan_context",
]

TASKS = ("classification", "detection", "segmentation")
READERS = ("clinician", "developer", "researcher")
PURPOSES = ("verify", "trust", "debug", "discover")

#: Methods estimated to take longer on this scan here are not recommended (minutes; the
#: sidebar's "time limit" setting).
DEFAULT_TIME_LIMIT_MIN = 10.0
#: Methods needing more forward passes are never recommended, however fast the model
#: (full-volume occlusion of a 256³ grid needs 250,048): restricted to a region they may be.
MAX_PASSES = 10_000
#: Model grids up to this many voxels are timed as soon as an explanation is picked (a
#: fraction of a second); larger ones (a 256³ segmenter: a minute) when the reader asks.
AUTO_TIMING_VOXELS = 128**3


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


@dataclass(frozen=True)
class Recommendation:
    """One method for the chosen elements, with what it would cost on this scan here.

    Attributes
    ----------
    method : Method
    served : tuple of str
        The wanted elements it serves, in the framework's order.
    estimate : Estimate
        Its samples on the model grid and, when a pass was measured, its estimated seconds.
    recommended : bool
        False when it is too slow here (or needs too many passes); it stays listed.
    reason : str
        Why it is not recommended ("" when it is).
    """

    method: Method
    served: tuple[str, ...]
    estimate: Estimate
    recommended: bool = True
    reason: str = ""

    @property
    def minutes(self) -> float | None:
        """Estimated minutes; None when no pass was measured."""
        return self.estimate.minutes

    @property
    def text(self) -> str:
        """``"Saliency ~1 min"``, ``"Occlusion ~3 min in the region"``, or why it is not recommended."""
        if not self.recommended:
            return f"{self.method.title}: {self.reason}"
        where = " in the region" if self.estimate.in_region else ""
        if self.estimate.seconds is None:
            return f"{self.method.title} ({self.estimate.passes_text}{where})"
        return f"{self.method.title} {self.estimate.text}{where}"


def recommended_methods(
    elements: tuple[str, ...] | list[str],
    *,
    has_layer: bool = True,
    shape: tuple[int, ...] | None = None,
    timing: PassTiming | None = None,
    region: np.ndarray | None = None,
    limit_minutes: float = DEFAULT_TIME_LIMIT_MIN,
    max_passes: int = MAX_PASSES,
) -> list[Recommendation]:
    """Methods serving any of ``elements``, the ones that fit first, fastest first.

    Parameters
    ----------
    elements : sequence of str
        The wanted elements.
    has_layer : bool
        Whether the model names a layer; class-activation methods are left out otherwise.
    shape : tuple of int, optional
        The model grid the scan is seen on, voxels (default 64³).
    timing : PassTiming, optional
        One measured pass on that grid (:func:`~napari_mlmi_interp.explain.timing.pass_timing`);
        without it there are no minutes and only the pass count filters.
    region : numpy.ndarray, optional
        A boolean mask on the model grid; methods that accept a region (occlusion) are
        counted on it only.
    limit_minutes : float
        A method estimated to take longer is not recommended ("too slow here: ~N h").
    max_passes : int
        A method needing more forward passes is not recommended whatever the timing (full-
        volume occlusion of a 256³ grid: 250,048): run it on a region instead.

    Returns
    -------
    list of Recommendation
        Recommended ones first, by estimated time (without a timing by forward + 2 backward
        passes), then by elements served (most first) and title; then the others, by time.
    """
    shape = tuple(shape or (64, 64, 64))
    out = []
    for m in list_methods(elements=tuple(elements)):
        if m.needs_layer and not has_layer:
            continue
        served = tuple(e for e in ELEMENTS if e in m.elements and e in elements)
        est = estimate(m, shape, timing, region=region)
        out.append(Recommendation(m, served, est, *_verdict(m, est, timing, limit_minutes, max_passes)))

    def order(r: Recommendation) -> tuple:
        e = r.estimate
        cost = e.seconds if e.seconds is not None else e.forwards + 2 * e.backwards
        return (not r.recommended, cost, -len(r.served), r.method.title)

    return sorted(out, key=order)


def _verdict(
    m: Method, est: Estimate, timing: PassTiming | None, limit_minutes: float, max_passes: int
) -> tuple[bool, str]:
    """``(recommended, reason)`` for a method's estimate."""
    if timing is not None and est.backwards and not timing.backward_fits:
        need = f" (~{timing.sample_bytes / 1024**3:.1f} GB a sample)" if timing.sample_bytes else ""
        return False, f"one backward pass needs more memory than is free here{need}"
    where = "" if est.in_region else " over the whole volume"
    if est.forwards > max_passes:
        hint = "; restrict it to a region" if m.accepts_region and not est.in_region else ""
        slow = f", {est.text}" if est.seconds is not None else ""
        return False, f"too slow here: {est.forwards:,} passes{where}{slow}{hint}"
    if est.seconds is not None and est.seconds > limit_minutes * 60:
        return False, f"too slow here: {est.text} (limit {limit_minutes:g} min)"
    return True, ""


def scan_context(
    explanation: Any, model: Any = None, region: np.ndarray | None = None
) -> tuple[tuple[int, ...] | None, PassTiming | None, np.ndarray | None]:
    """What the estimates of an explained scan rest on: ``(model grid shape, timing, region)``.

    The shape is the explanation's model grid (voxels, z, y, x); the timing is the one kept
    for (``model``'s sha256, that shape), None until measured; ``region`` (a mask on the
    explanation's native grid) becomes its bounding box on the model grid.
    """
    if explanation is None:
        return None, None, None
    grid = explanation.model_grid
    shape = tuple(grid.shape)
    timing = known_timing(getattr(model, "sha256", None), shape)
    on_grid = region_box_on_grid(region, explanation.native.geometry, grid) if region is not None else None
    return shape, timing, on_grid
