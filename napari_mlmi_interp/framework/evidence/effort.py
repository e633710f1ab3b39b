"""How much model evidence fits: the effort (curve steps, randomisation stages, perturbations,
augmented copies) whose estimated time on this scan on this machine fits the time limit.

The model's figures run the model dozens of times. At 96³ that is seconds; for a real
segmenter at 256³ one forward pass takes half a minute on two cores, and the full effort
(about 70 passes) would take over half an hour. :func:`choose_effort` counts the passes of
each effort (:func:`evidence_passes`), prices them with the pass timing the time-aware
recommendations use (or, before one was measured, with the explanation's own attribution
time), and picks the largest effort that fits. The effort chosen, its passes and its
estimate are stored with the figures, so a coarser curve says it is coarser.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["EFFORTS", "Effort", "choose_effort", "effort_for", "effort_text", "evidence_passes"]

#: The efforts, largest first; ``full`` is :func:`model_evidence`'s defaults, ``quick`` is
#: ``explain --evidence quick``.
EFFORTS: dict[str, dict[str, int]] = {
    "full": {"steps": 20, "randomisation_stages": 5, "infidelity_samples": 16, "tta": 8},
    "quick": {"steps": 10, "randomisation_stages": 3, "infidelity_samples": 8, "tta": 4},
    "brief": {"steps": 5, "randomisation_stages": 2, "infidelity_samples": 4, "tta": 2},
}


@dataclass(frozen=True)
class Effort:
    """An effort, its passes and its estimated seconds.

    Attributes
    ----------
    name : str
        A key of :data:`EFFORTS`.
    options : dict
        Its keyword arguments for :func:`~napari_mlmi_interp.framework.evidence.model_evidence`.
    forwards, backwards : int
        Forward and backward samples it runs (:func:`evidence_passes`).
    seconds : float or None
        Estimated seconds; None when no timing was known (then ``full`` is chosen).
    fits : bool
        Whether the estimate is within the limit (the smallest effort is chosen anyway).
    basis : str
        What the seconds rest on: ``"measured pass"``, ``"the map's attribution time"`` (no
        pass measured yet) or ``"none"``.
    """

    name: str
    options: dict[str, int]
    forwards: int
    backwards: int
    seconds: float | None
    fits: bool = True
    basis: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """What is stored beside the figures."""
        return {
            "effort": self.name,
            "effort_passes": {"forward": self.forwards, "backward": self.backwards},
            "effort_estimate_s": None if self.seconds is None else round(self.seconds, 1),
            "effort_estimate_basis": self.basis,
        }


def evidence_passes(
    options: dict[str, int],
    method_cost: tuple[int, int],
    *,
    segmenter: bool,
    batch_size: int = 4,
    layers: int | None = None,
) -> tuple[int, int]:
    """``(forward, backward)`` samples of :func:`model_evidence` with ``options``.

    Deletion and insertion ``steps + 1`` each; infidelity ``samples`` plus one unperturbed
    sample per batch of ``batch_size`` (Captum's infidelity); region removal 2; augmentation
    ``tta + 1``; a segmenter's two score anchors (scan and baseline); and per randomisation
    stage (no more stages than the model's ``layers`` with parameters) one run of the
    explanation's method (``method_cost``). Counted on a model that counts its samples
    (``tests/test_effort.py``).
    """
    stages = int(options["randomisation_stages"])
    if layers is not None:
        stages = min(stages, int(layers))
    samples = int(options["infidelity_samples"])
    forwards = 2 * (int(options["steps"]) + 1) + samples + -(-samples // max(1, int(batch_size))) + 2
    forwards += int(options["tta"]) + 1 + (2 if segmenter else 0)
    return forwards + stages * int(method_cost[0]), stages * int(method_cost[1])


def choose_effort(
    method_cost: tuple[int, int],
    timing: Any,
    *,
    segmenter: bool,
    limit_minutes: float,
    batch_size: int = 4,
    layers: int | None = None,
) -> Effort:
    """The largest effort whose estimate fits ``limit_minutes`` (else the smallest, ``fits=False``).

    Parameters
    ----------
    method_cost : (int, int)
        Forward and backward samples of one run of the explanation's method.
    timing : PassTiming or None
        One pass of the model on the explanation's grid; without it ``full`` is chosen,
        unestimated.
    segmenter : bool
        Whether the score is a segmenter's ROI score (two more passes).
    limit_minutes : float
        The time limit (the sidebar's, 10 minutes by default).
    batch_size, layers : int
        As :func:`evidence_passes` takes them.
    """
    if timing is not None and not timing.backward_fits:
        # the backward was not run (one sample over the free memory): a stand-in of twice a
        # forward, the ratio measured on the zoo's models (the randomisation stages will be
        # refused by the memory check anyway)
        timing = replace(timing, backward_s=2.0 * timing.forward_s, batch_backward_s=None)
    basis = (
        "none" if timing is None else ("measured pass" if timing.measured else "the map's attribution time")
    )
    effort = None
    for name, options in EFFORTS.items():
        forwards, backwards = evidence_passes(
            options, method_cost, segmenter=segmenter, batch_size=batch_size, layers=layers
        )
        # the same price as the recommendations': per sample in a batch when the evidence batches
        seconds = None if timing is None else timing.seconds(forwards, backwards, batched=batch_size > 1)
        effort = Effort(name, dict(options), forwards, backwards, seconds, basis=basis)
        if seconds is None or seconds <= 60.0 * limit_minutes:
            return effort
    assert effort is not None
    return replace(effort, fits=False)


def effort_for(explanation: Any, model: Any, *, limit_minutes: float) -> Effort:
    """The effort for ``explanation`` of ``model`` (a LoadedModel) within ``limit_minutes``.

    The pass timing is the one kept for the model on the explanation's grid (the sidebar's
    recommendations measure it); before one is kept, the explanation's own attribution time
    divided by its samples stands in for both a forward and a backward sample (not measured).
    """
    from ...explain.methods import METHODS
    from ...explain.timing import PassTiming, estimate, known_timing, region_box_on_grid
    from ...metrics.faithfulness import parametrised_layers
    from .from_model import default_batch_size

    shape = tuple(int(n) for n in explanation.model_grid.shape)
    method = METHODS.get(explanation.method)
    cost = (1, 1)
    region = getattr(explanation, "region", None)
    if region is not None:  # occlusion restricted to a region: counted on it, as it reruns
        region = region_box_on_grid(region, explanation.native.geometry, explanation.model_grid)
    if method is not None:
        counted = estimate(method, shape, None, params=dict(explanation.params), region=region)
        cost = (counted.forwards, counted.backwards)
    timing = known_timing(getattr(model, "sha256", None), shape)
    attribute_s = float((explanation.timings or {}).get("attribute", 0.0))
    if timing is None and attribute_s > 0:
        per_sample = attribute_s / max(1, cost[0] + cost[1])
        timing = PassTiming(per_sample, per_sample, shape, measured=False)
    segmenter = model.spec.task == "segmentation" and explanation.target.get("kind") == "roi"
    return choose_effort(
        cost,
        timing,
        segmenter=segmenter,
        limit_minutes=limit_minutes,
        batch_size=default_batch_size((int(model.spec.input.channels), *shape)),
        layers=len(parametrised_layers(model.module)),
    )


def effort_text(effort: Effort) -> str:
    """``"brief effort (5 curve steps, 2 randomisation stages, 4 perturbations, 2 copies), ~6 min"``."""
    from ...explain.timing import minutes_text

    o = effort.options
    words = (
        f"{effort.name} effort ({o['steps']} curve steps, {o['randomisation_stages']} randomisation "
        f"stages, {o['infidelity_samples']} perturbations, {o['tta']} augmented copies)"
    )
    if effort.seconds is None:
        return words
    return words + f", {minutes_text(effort.seconds)}" + ("" if effort.fits else " (over the time limit)")
