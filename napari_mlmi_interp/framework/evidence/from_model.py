"""Evidence that runs the model: model transparency and actionability (seconds to minutes).

One explanation, one model, named phases: deletion and insertion curves, infidelity, region
removal (score drop and confidence), test-time augmentation, cascading randomisation. Each
phase adds its figures and curves to one :class:`_Probe` and counts as one step of progress;
a cancel token stops between phases and inside the randomisation runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import metrics as M
from ..settings import DEFAULT_SETTINGS, FigureSettings, baseline_text
from .assessment import Assessment
from .bands import Band, linked_bands
from .figures import Figure, figure_label, judged

__all__ = ["model_evidence", "score_function"]

#: Methods whose maps are local (gradients at one point): infidelity perturbs them with noise.
_LOCAL_METHODS = {"saliency", "guided_backprop", "deconvolution", "guided_gradcam", "smoothgrad"}

#: The figures that need a classification score; n/a (with the reason) for other models.
_CLASSIFICATION_FIGURES = (
    "deletion_auc",
    "insertion_auc",
    "randomisation_final_rho",
    "infidelity",
    "prediction_drop",
    "confidence",
    "tta_sd",
)


def score_function(model: Any, class_index: int) -> Callable[[Any], Any]:
    """``batch -> probability of class_index`` for a classification model (softmax or sigmoid)."""
    import torch

    module = model.module

    def forward(x: Any) -> Any:
        logits = module(x).reshape(x.shape[0], -1)
        if logits.shape[1] == 1:  # one logit: p(present)
            p = torch.sigmoid(logits[:, 0])
            return p if class_index == 1 else 1 - p
        return torch.softmax(logits, dim=1)[:, class_index]

    return forward


def model_evidence(
    explanation: Any,
    model: Any,
    *,
    percent: float | None = None,
    steps: int = 20,
    baseline: Any = None,
    randomisation_stages: int = 5,
    infidelity_samples: int = 16,
    tta: int = 8,
    batch_size: int = 4,
    bands: Mapping[str, Band] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Any = None,
    settings: FigureSettings = DEFAULT_SETTINGS,
) -> Assessment:
    """Model transparency and actionability of an explanation: runs the model (seconds to minutes).

    Classification models only for the faithfulness figures (the score is the target
    class's probability); for other models those figures are n/a with the reason.
    ``progress(done, total)`` counts phases; ``cancel`` (a CancelToken) stops between them
    and inside the randomisation runs.

    Parameters
    ----------
    percent : float, optional
        k of the top-k % region removed for the score drop; ``settings.topk_percent`` by default.
    baseline : str, number or tensor, optional
        What removed voxels become, for deletion, insertion and the score drop alike;
        ``settings.baseline`` by default (a blurred scan, Gaussian SD ``settings.blur_sigma_mm``
        mm, converted to voxels of the model grid). The figures' notes declare it.
    settings : FigureSettings
        The figure settings (:data:`~napari_mlmi_interp.framework.settings.DEFAULT_SETTINGS`).
    """
    settings, baseline, declared = _declared_baseline(settings, percent, baseline)
    kind = _model_kind(model.spec)
    if model.spec.task != "classification" or explanation.target.get("kind") != "class":
        figs = {"model_kind": kind}
        for key in _CLASSIFICATION_FIGURES:
            figs[key] = Figure(key, None, "n/a", "classification models only", figure_label(key, settings))
        return Assessment(figs, settings={**settings.to_dict(), "baseline_text": declared})
    probe = _probe(explanation, model, baseline, declared, linked_bands(bands, settings), settings)
    probe.figs["model_kind"] = kind
    probe.batch_size, probe.progress, probe.cancel = batch_size, progress, cancel
    probe.phases = 5 + randomisation_stages
    _deletion_insertion(probe, steps)
    _infidelity(probe, explanation.method, infidelity_samples)
    _region_removal(probe)
    _augmentation(probe, tta)
    if randomisation_stages > 0:
        _randomisation(probe, explanation, model, randomisation_stages)
    return Assessment(
        probe.figs,
        probe.curves,
        settings={
            **settings.to_dict(),
            # what the cards declare: the setting's name, or the number/array passed instead
            "baseline": settings.baseline if isinstance(baseline, str) else declared,
            "baseline_text": declared,
            "steps": steps,
            "randomisation_stages": randomisation_stages,
            "infidelity_samples": infidelity_samples,
            "tta": tta,
        },
    )


def _declared_baseline(
    settings: FigureSettings, percent: float | None, baseline: Any
) -> tuple[FigureSettings, Any, str]:
    """The settings with ``percent`` (and a named ``baseline``) applied, the baseline, its words."""
    if isinstance(baseline, str) or baseline is None:
        settings = settings.with_(topk_percent=percent, baseline=baseline)
        return settings, settings.baseline, settings.baseline_text()
    # a number or an array: honoured, declared as such
    return settings.with_(topk_percent=percent), baseline, baseline_text(baseline)


def _model_kind(spec: Any) -> Figure:
    """Whether the model explains by design (a prototype network) or is a black box."""
    if spec.prototype:
        return Figure("model_kind", "prototype network (interpretable by design)", "pass")
    return Figure("model_kind", "black box (post-hoc explanation)", "warn")


@dataclass
class _Probe:
    """What every phase needs (the score, the input, the map, the baseline) and what it adds."""

    forward: Callable[[Any], Any]
    x: Any  # the model input (a tensor in the model's axes)
    grid_map: np.ndarray  # the map on the model grid, in the model's axes
    base: Any  # the baseline on the same grid
    note: str  # the baseline, declared on the figures that use it
    index: int  # the explained class
    model_input: Any
    bands: Mapping[str, Band]
    settings: FigureSettings
    batch_size: int = 4
    progress: Callable[[int, int], None] | None = None
    cancel: Any = None
    phases: int = 0
    done: int = 0
    figs: dict[str, Figure] = field(default_factory=dict)
    curves: dict[str, dict[str, list]] = field(default_factory=dict)

    def check(self) -> None:
        """Stop here when cancelled."""
        from ...explain.engine import Cancelled

        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("cancelled")

    def step(self) -> None:
        """One phase done: stop when cancelled, else report progress."""
        self.check()
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.phases)

    def judged(self, key: str, value: Any, note: str = "") -> Figure:
        return judged(key, value, self.bands, note, self.settings)


def _probe(
    explanation: Any,
    model: Any,
    baseline: Any,
    declared: str,
    bands: Mapping[str, Band],
    settings: FigureSettings,
) -> _Probe:
    """The model input, the map on the model grid and the baseline (blur SD in model-grid voxels)."""
    from ...models.predict import preprocessor_for

    mi = explanation.prediction.model_input
    if mi is None:
        mi = preprocessor_for(model).forward(explanation.native)
    pre = preprocessor_for(model)
    x = mi.tensor()
    grid_map = np.asarray(pre.to_model_axes(explanation.model_map), dtype=np.float64)
    index = int(explanation.target["index"])
    # sigma in voxels of the model grid, in the model's axis order
    spacing = np.asarray(mi.grid.spacing, dtype=np.float64)
    sigma = float(settings.blur_sigma_mm) / (spacing[::-1] if pre.input.axes == "xyz" else spacing)
    base = M.baseline_like(x, baseline, blur_sigma=sigma)
    return _Probe(
        score_function(model, index), x, grid_map, base, f"baseline: {declared}", index, mi, bands, settings
    )


def _deletion_insertion(probe: _Probe, steps: int) -> None:
    """Deletion and insertion curves (most attributed voxels first) and their areas."""
    for name, curve in (("deletion", M.deletion_curve), ("insertion", M.insertion_curve)):
        f, s = curve(
            probe.forward,
            probe.x,
            probe.grid_map,
            steps=steps,
            baseline=probe.base,
            batch_size=probe.batch_size,
        )
        probe.figs[f"{name}_auc"] = probe.judged(f"{name}_auc", M.curve_auc(f, s), probe.note)
        probe.curves[name] = {"x": f.tolist(), "y": s.tolist()}
        probe.step()


def _infidelity(probe: _Probe, method: str, samples: int) -> None:
    """Infidelity under noise (local methods) or subset removal (the others)."""
    probe.figs["infidelity"] = Figure(
        "infidelity",
        M.infidelity(
            probe.forward,
            probe.x,
            probe.grid_map,
            perturbation="noise" if method in _LOCAL_METHODS else "subset",
            n_perturb=samples,
            batch_size=probe.batch_size,
        ),
    )
    probe.step()


def _region_removal(probe: _Probe) -> None:
    """The score with and without the top-k % region: the drop, and the confidence before."""
    region = M.topk_mask(probe.grid_map, float(probe.settings.topk_percent))
    before, after = M.region_removal(probe.forward, probe.x, region, baseline=probe.base)
    probe.figs["prediction_drop"] = probe.judged("prediction_drop", before - after, probe.note)
    probe.figs["confidence"] = Figure("confidence", before)
    probe.curves["region_removal"] = {"x": ["with region", "without"], "y": [before, after]}
    probe.step()


def _augmentation(probe: _Probe, tta: int) -> None:
    """Spread of the score under test-time augmentation (a referral cue)."""
    scores = M.tta_scores(probe.forward, probe.x, n=tta, batch_size=probe.batch_size)
    probe.figs["tta_sd"] = judged("tta_sd", float(np.std(scores[1:])) if tta > 0 else None, probe.bands)
    probe.curves["tta"] = {"x": list(range(len(scores))), "y": scores.tolist()}
    probe.step()


def _randomisation(probe: _Probe, explanation: Any, model: Any, stages: int) -> None:
    """Cascading randomisation: the map's rank correlation with maps of ever more randomised models."""
    from dataclasses import replace

    from ...explain.engine import explain

    def attribute(module: Any) -> np.ndarray:
        probe.check()
        randomised = replace(model, module=module, sha256=model.sha256 + ":randomised")
        out = explain(
            explanation.native,
            randomised,
            explanation.method,
            target=probe.index,
            params=dict(explanation.params),
            model_input=probe.model_input,
            cancel=probe.cancel,
        )
        probe.step()
        return out.model_map

    result = M.randomisation_test(model.module, attribute, max_stages=stages, original=explanation.model_map)
    probe.figs["randomisation_final_rho"] = judged("randomisation_final_rho", result.final, probe.bands)
    probe.curves["randomisation"] = {
        "x": [f"{len(s)} layer{'s' if len(s) > 1 else ''} to {s[-1]}" for s in result.stages],
        "y": result.correlations,
    }
