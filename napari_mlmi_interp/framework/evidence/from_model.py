"""Evidence that runs the model: model transparency and actionability (seconds to minutes).

One explanation, one model, named phases: deletion and insertion curves, infidelity, region
removal (score drop and confidence), test-time augmentation, cascading randomisation. Each
phase adds its figures and curves to one :class:`~.probe.Probe` and counts as one step of
progress; a cancel token stops between phases and inside the randomisation runs.

A classifier's target is a class, its score the class probability. A segmenter's target is
a class inside an ROI, its score the sum or mean of the class's logits there, scaled to 1 on
the scan and 0 on the baseline (:mod:`.from_model_seg`); the same figures follow, and the
augmentation spread is that of the class's segmented volume (mL) and Dice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import metrics as M
from ...metrics.faithfulness import parametrised_layers
from ..settings import DEFAULT_SETTINGS, FigureSettings, baseline_text
from .assessment import Assessment
from .bands import Band, linked_bands
from .figures import Figure, figure_label, judged
from .from_model_seg import (
    AUGMENTATION_OPTIONS,
    augmentation_options,
    roi_score_function,
    roi_target,
    scaled,
    segmentation_spread,
)
from .probe import Probe

__all__ = ["MODEL_FIGURES", "model_evidence", "score_function"]

#: Methods whose maps are local (gradients at one point): infidelity perturbs them with noise.
_LOCAL_METHODS = {"saliency", "guided_backprop", "deconvolution", "guided_gradcam", "smoothgrad"}

#: The figures computed by running the model (model_kind aside); n/a with the reason when they cannot be.
MODEL_FIGURES = (
    "deletion_auc",
    "insertion_auc",
    "randomisation_final_rho",
    "infidelity",
    "prediction_drop",
    "confidence",
    "tta_sd",
    "tta_volume_sd_ml",
    "tta_dice_sd",
)

#: Inputs (voxels x channels) above which the model runs one sample at a time by default.
_LARGE_INPUT = 128**3

#: The figures only a segmenter has (its segmented volume and Dice under augmentation).
_SEGMENTATION_FIGURES = ("tta_volume_sd_ml", "tta_dice_sd")


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
    batch_size: int | None = None,
    bands: Mapping[str, Band] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Any = None,
    settings: FigureSettings = DEFAULT_SETTINGS,
    roi: Any = None,
    augmentation: Mapping[str, Any] | None = None,
) -> Assessment:
    """Model transparency and actionability of an explanation: runs the model (seconds to minutes).

    A classifier's class target is scored by the class probability; a segmenter's ROI target
    (class T inside mask M) by the sum or mean of T's logits in M, scaled to 1 on the scan
    and 0 on the baseline. Any other pairing gives n/a figures with the reason.
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
    batch_size : int, optional
        Samples per forward pass: 4, or 1 for an input of more than 128³ voxels (a segmenter
        at 256³ needs gigabytes per sample).
    settings : FigureSettings
        The figure settings (:data:`~napari_mlmi_interp.framework.settings.DEFAULT_SETTINGS`).
    roi : array or Volume, optional
        Segmenter: the mask (scan's grid, z, y, x) the map was explained in, when the
        explanation does not carry it (``Explanation.roi``) and it was not the model's own
        segmentation of the class.
    augmentation : mapping, optional
        Test-time augmentation settings (``shift_voxels``, ``intensity``, ``noise``, ``seed``;
        :func:`~napari_mlmi_interp.metrics.augmented_copies`), the same for both kinds of model.
    """
    settings, baseline, declared = _declared_baseline(settings, percent, baseline)
    options = augmentation_options(augmentation)
    kind = _model_kind(model.spec)
    probe = _probe(explanation, model, baseline, declared, linked_bands(bands, settings), settings, roi)
    if isinstance(probe, str):
        figs = {"model_kind": kind}
        for key in MODEL_FIGURES:
            figs[key] = Figure(key, None, "n/a", probe, figure_label(key, settings))
        return Assessment(figs, settings={**settings.to_dict(), "baseline_text": declared})
    probe.figs["model_kind"] = kind
    probe.batch_size = batch_size or default_batch_size(tuple(probe.x.shape[1:]))
    probe.progress, probe.cancel = progress, cancel
    # one randomisation run per stage: no more stages than layers with parameters
    probe.phases = 5 + min(randomisation_stages, len(parametrised_layers(model.module)))
    _deletion_insertion(probe, steps)
    _infidelity(probe, explanation.method, infidelity_samples)
    _region_removal(probe)
    _augmentation(probe, tta, options)
    if randomisation_stages > 0:
        _randomisation(probe, explanation, model, randomisation_stages)
    effort = {
        "steps": steps,
        "randomisation_stages": randomisation_stages,
        "infidelity_samples": infidelity_samples,
        "tta": tta,
        "augmentation": effective_augmentation(options),
    }
    return Assessment(probe.figs, probe.curves, settings=_run_settings(probe, baseline, declared, effort))


def effective_augmentation(options: Mapping[str, Any]) -> dict[str, Any]:
    """The augmentation settings the copies were made with: the caller's over the defaults."""
    import inspect

    defaults = {
        k: p.default
        for k, p in inspect.signature(M.augmented_copies).parameters.items()
        if k in AUGMENTATION_OPTIONS
    }
    return {**defaults, **options}


def default_batch_size(shape: tuple[int, ...]) -> int:
    """Samples per forward pass of one sample of ``shape`` (channels, *grid): 4, or 1 above 128³ values."""
    return 4 if int(np.prod(shape)) <= _LARGE_INPUT else 1


def _run_settings(probe: Probe, baseline: Any, declared: str, effort: dict[str, Any]) -> dict[str, Any]:
    """The settings stored beside the figures: the figure settings, the baseline, the effort, the score."""
    settings = probe.settings
    return {
        **settings.to_dict(),
        # what the cards declare: the setting's name, or the number/array passed instead
        "baseline": settings.baseline if isinstance(baseline, str) else declared,
        "baseline_text": declared,
        **effort,
        **_score_settings(probe),
    }


def _score_settings(probe: Probe) -> dict[str, Any]:
    """What the score is: a class probability, or a segmenter's ROI score and its two anchors."""
    if probe.roi is None:
        return {"score": "class probability"}
    r = probe.roi
    return {
        "score": f"{r.reduce} of the class's logits in the ROI, scaled: 1 on the scan, 0 on the baseline",
        "roi_score": {"input": r.score_input, "baseline": r.score_baseline, "reduce": r.reduce},
    }


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


def _probe(
    explanation: Any,
    model: Any,
    baseline: Any,
    declared: str,
    bands: Mapping[str, Band],
    settings: FigureSettings,
    roi: Any,
) -> Probe | str:
    """The model input, the map on the model grid, the baseline (blur SD in model-grid voxels)
    and the target's score; the reason instead when the figures cannot be computed."""
    from ...models.predict import preprocessor_for

    task, kind = model.spec.task, explanation.target.get("kind")
    if not ((task == "classification" and kind == "class") or (task == "segmentation" and kind == "roi")):
        return f"no score for a {kind} target of a {task} model"
    pre = preprocessor_for(model)
    mi = explanation.prediction.model_input
    if mi is None:
        mi = pre.forward(explanation.native)
    x = mi.tensor()
    grid_map = np.asarray(pre.to_model_axes(explanation.model_map), dtype=np.float64)
    # sigma in voxels of the model grid, in the model's axis order
    spacing = np.asarray(mi.grid.spacing, dtype=np.float64)
    sigma = float(settings.blur_sigma_mm) / (spacing[::-1] if pre.input.axes == "xyz" else spacing)
    base = M.baseline_like(x, baseline, blur_sigma=sigma)
    note = f"baseline: {declared}"
    if kind == "class":
        index = int(explanation.target["index"])
        return Probe(score_function(model, index), x, grid_map, base, note, index, mi, bands, settings)
    target = roi_target(explanation, model, pre, mi, x, base, roi)
    if isinstance(target, str):
        return target
    raw = roi_score_function(target.logits, target.mask, target.class_index, target.reduce)
    forward = scaled(raw, target.score_input, target.score_baseline)
    return Probe(forward, x, grid_map, base, note, target.class_index, mi, bands, settings, roi=target)


def _deletion_insertion(probe: Probe, steps: int) -> None:
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


def _infidelity(probe: Probe, method: str, samples: int) -> None:
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


def _region_removal(probe: Probe) -> None:
    """The score with and without the top-k % region: the drop (and a classifier's confidence)."""
    region = M.topk_mask(probe.grid_map, float(probe.settings.topk_percent))
    before, after = M.region_removal(probe.forward, probe.x, region, baseline=probe.base)
    probe.figs["prediction_drop"] = probe.judged("prediction_drop", before - after, probe.note)
    if probe.roi is None:  # a segmenter's confidence is its class probability in the ROI (augmentation)
        probe.figs["confidence"] = Figure("confidence", before)
    probe.curves["region_removal"] = {"x": ["with region", "without"], "y": [before, after]}
    probe.step()


def _augmentation(probe: Probe, tta: int, options: Mapping[str, Any]) -> None:
    """Spread under test-time augmentation (a referral cue): of the score, or of a segmentation."""
    if probe.roi is not None:
        segmentation_spread(probe, probe.roi, tta, options)
        return
    scores = M.tta_scores(probe.forward, probe.x, n=tta, batch_size=probe.batch_size, **options)
    probe.figs["tta_sd"] = judged("tta_sd", float(np.std(scores[1:])) if tta > 0 else None, probe.bands)
    for key in _SEGMENTATION_FIGURES:
        probe.figs[key] = Figure(
            key, None, "n/a", "segmentation models only", figure_label(key, probe.settings)
        )
    probe.curves["tta"] = {"x": list(range(len(scores))), "y": scores.tolist()}
    probe.step()


def _randomisation(probe: Probe, explanation: Any, model: Any, stages: int) -> None:
    """Cascading randomisation: the map's rank correlation with maps of ever more randomised models."""
    from dataclasses import replace

    from ...explain.engine import explain
    from ...models.preprocessing import source_digest

    # explain() takes a scan; the map's volume stands in for its grid (the scan's), and the
    # model input made from the scan is marked as made from it, so the randomised models see
    # the scan, not the map (explain would otherwise preprocess the map's voxels as an image)
    model_input = replace(probe.model_input, source=source_digest(explanation.native))

    def attribute(module: Any) -> np.ndarray:
        probe.check()
        randomised = replace(model, module=module, sha256=model.sha256 + ":randomised")
        out = explain(
            explanation.native,
            randomised,
            explanation.method,
            params=dict(explanation.params),
            **probe.explain_target(),
            model_input=model_input,
            cancel=probe.cancel,
            region=explanation.region,  # occlusion restricted to a region: the same region
        )
        probe.step()
        return out.model_map

    result = M.randomisation_test(model.module, attribute, max_stages=stages, original=explanation.model_map)
    probe.figs["randomisation_final_rho"] = judged("randomisation_final_rho", result.final, probe.bands)
    probe.curves["randomisation"] = {
        "x": [f"{len(s)} layer{'s' if len(s) > 1 else ''} to {s[-1]}" for s in result.stages],
        "y": result.correlations,
    }
