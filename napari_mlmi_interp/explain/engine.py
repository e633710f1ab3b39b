"""explain(): any model + any volume -> an attribution map on the model grid and the native grid.

A short pipeline of named steps: check the request (before any cache lookup, so a bad
argument fails the same way whether or not a result is stored), prepare the model input,
map the region, look the result up, resolve the target, run the method on the observed
model (:mod:`.observe`: progress and cancel), and assemble the :class:`Explanation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..models.domain import check_domain
from ..models.loading import LoadedModel
from ..models.predict import (
    Prediction,
    classification_prediction,
    model_failure,
    predict,
    preprocessor_for,
    segmentation_prediction,
)
from ..models.preprocessing import ModelInput
from .cache import ResultCache
from .convergence import convergence_warning, per_sample_normalisation
from .device import full_precision, on_device, resolve_device
from .explanation import (
    Explanation,
    cache_entry_key,
    completeness_summary,
    from_cache_entry,
    store_in_cache,
    versions,
)
from .methods import METHODS, Attribution, Method, get_method
from .observe import Cancelled, CancelToken, ProgressCallback, observed
from .targets import ResolvedTarget, class_index, kept_labels, native_mask, resolve_target

__all__ = ["CancelToken", "Cancelled", "Explanation", "explain", "resolve_params"]


def resolve_params(method: Method, params: dict[str, Any] | None) -> dict[str, Any]:
    """The method's defaults updated with ``params``; unknown names are an error."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(method.params))
    if unknown:
        raise InputError(
            f"{method.name} has no parameter {', '.join(unknown)}; its parameters: "
            f"{', '.join(method.params) or 'none'}"
        )
    return {**method.params, **params}


class _Clock:
    """Seconds spent in each named step, and in all of them."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.last = now - self.last, now

    def total(self) -> float:
        return time.perf_counter() - self.start

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total": self.last - self.start}


def explain(
    volume: Volume,
    model: LoadedModel,
    method: str,
    *,
    target: int | str | None = None,
    roi: np.ndarray | Volume | None = None,
    roi_label: int | str | None = None,
    roi_reduce: str = "sum",
    region: np.ndarray | Volume | None = None,
    params: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    model_input: ModelInput | None = None,
    cache: ResultCache | None = None,
    memory_budget_mb: float | None = None,
    tuning: str = "auto",
    device: str = "auto",
) -> Explanation:
    """Attribute ``model``'s decision on ``volume`` with ``method``.

    Parameters
    ----------
    target : int or str, optional
        A class index or name (a unique prefix will do); default the predicted class, for a
        segmenter ``roi_label``, else class 1 (its score: ``roi_reduce`` of its logits in the ROI).
    roi : array or Volume, optional
        Segmentation only: a native-grid mask (default: the model's own segmentation of
        ``roi_label``, else of the target); given, no separate prediction runs.
    roi_label : int or str, optional
        Segmentation, without ``roi``: the ROI is the model's own segmentation of this class.
    region : array or Volume, optional
        Occlusion only: a native-grid mask; only windows around it are occluded (0 elsewhere).
    progress : callable, optional
        ``progress(done, total)`` in samples through the model; from the calling thread.
    cancel : CancelToken, optional
        Set it from any thread to stop within one batch (:class:`Cancelled` is raised).
    cache : ResultCache, optional
        Reuse and store results (same model, input, method, parameters and target).
    memory_budget_mb : float, optional
        Budget for ``"auto"`` internal batch sizes (default: a quarter of free memory).
    tuning : {"auto", "off"}
        ``"auto"``: the execution tuning measured to pay off on a CPU (:mod:`.tuning`).
    device : str
        ``"auto"`` (a CUDA GPU when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (:mod:`.device`).

    Raises
    ------
    InputError
        Unknown method, parameter, class or device; a bad ROI, region or tuning; a layer method
        on a model without ``cam_layers`` (all before any cache lookup).
    Cancelled
        When the token was set.
    """
    m, masks = get_method(method), (roi, roi_label)
    p = _checked_request(m, volume, model, params, roi=masks, reduce=roi_reduce, region=region, tuning=tuning)
    layer, clock, dev = _resolve_layer(m, model), _Clock(), resolve_device(device)
    pre, mi = _prepare_input(volume, model, model_input)
    grid_region = _map_region(region, volume, pre, mi)
    clock.lap("preprocess")
    key = cache and cache_entry_key(volume, model, mi, m.name, p, target, roi, roi_reduce, region, roi_label)
    if key and (hit := cache.get(key)) is not None:
        _report_done(progress)
        return from_cache_entry(hit, volume, model, mi, clock.total())
    prediction = None if _deferred(model, target, roi) else predict(volume, model, model_input=mi)
    clock.lap("predict")
    resolved = resolve_target(
        volume, model, mi, pre, target, roi=roi, roi_label=roi_label, roi_reduce=roi_reduce,
        prediction=prediction,
    )  # fmt: skip
    run = _run_observed(
        m, model, mi, resolved, p, layer=layer, region=grid_region, progress=progress, cancel=cancel,
        keep_prediction=prediction is None, memory_budget_mb=memory_budget_mb, tuning=tuning, device=dev,
    )  # fmt: skip
    clock.lap("attribute")
    prediction = prediction or _prediction_from_run(volume, model, mi, run)
    result = _assemble(volume, model, pre, mi, m, resolved, run, prediction, grid_region, clock, region)
    if key is not None:
        store_in_cache(cache, key, result)
    return result


def _deferred(model: LoadedModel, target: int | str | None, roi: np.ndarray | Volume | None) -> bool:
    """Whether the prediction can wait for the method's own pass on the unperturbed input.

    A classifier with a given target, or a segmenter with a given mask, needs no separate
    forward (for a segmenter at 256³ a full one: 20 s); the prediction comes from the run
    when the method makes such a pass (:func:`_prediction_from_run`).
    """
    return roi is not None if model.spec.task != "classification" else target is not None


def _check_roi_label(
    model: LoadedModel, roi: np.ndarray | Volume | None, roi_label: int | str | None
) -> None:
    """``roi_label`` names a class of a segmenter, and comes without a mask."""
    if roi_label is None:
        return
    if model.spec.task == "classification":
        raise InputError(
            f"roi_label is for segmentation models, got the classification model '{model.spec.name}'"
        )
    if roi is not None:
        raise InputError(
            "give either roi (a mask) or roi_label (a class of the model's segmentation), not both"
        )
    class_index(roi_label, model.spec.classes, default=None, what="ROI")


def _report_done(progress: ProgressCallback | None) -> None:
    if progress is not None:
        progress(1, 1)


def _checked_request(
    m: Method,
    volume: Volume,
    model: LoadedModel,
    params: dict[str, Any] | None,
    *,
    roi: tuple[np.ndarray | Volume | None, int | str | None],
    reduce: str,
    region: np.ndarray | Volume | None,
    tuning: str,
) -> dict[str, Any]:
    """The method's parameters, resolved and checked, once every option is known to be valid.

    ``roi``: the mask and the ROI label (at most one of them given).
    """
    roi, roi_label = roi
    if m.overrides_nonlinearities and (why := m.unavailable_for(model)):
        raise InputError(f"{m.title} {why}")
    _check_roi_label(model, roi, roi_label)
    p = resolve_params(m, params)
    m.check(p)
    if reduce not in ("sum", "mean"):
        raise InputError(f"roi_reduce must be 'sum' or 'mean', got {reduce!r}")
    if tuning not in ("auto", "off"):
        raise InputError(f"tuning must be 'auto' or 'off', got {tuning!r}")
    if roi is not None and model.spec.task != "classification":
        native_mask(roi, volume, "roi")
    if region is not None:
        if not m.accepts_region:
            which = ", ".join(x.title.lower() for x in METHODS.values() if x.accepts_region)
            raise InputError(f"a region restricts {which} only, not {m.title}")
        native_mask(region, volume, "region")
    return p


def _resolve_layer(m: Method, model: LoadedModel) -> Any:
    """The model's ``cam_layers[0]`` for a method that needs a layer (else None)."""
    if not m.needs_layer:
        return None
    spec = model.spec
    if not spec.cam_layers:
        raise InputError(f"{m.title} needs a layer: the spec of '{spec.name}' lists no cam_layers")
    layers = dict(model.module.named_modules())
    if spec.cam_layers[0] not in layers:
        raise InputError(
            f"model '{spec.name}' has no layer {spec.cam_layers[0]!r} (from its spec's cam_layers)"
        )
    return layers[spec.cam_layers[0]]


def _prepare_input(
    volume: Volume, model: LoadedModel, model_input: ModelInput | None
) -> tuple[Any, ModelInput]:
    """The preprocessor and the model input: ``model_input`` when made from this scan's content."""
    spec = model.spec
    pre = preprocessor_for(model)
    reusable = model_input is not None and model_input.made_from(volume, (spec.input, spec.normalization))
    return pre, model_input if reusable else pre.forward(volume)


def _map_region(
    region: np.ndarray | Volume | None, volume: Volume, pre: Any, mi: ModelInput
) -> np.ndarray | None:
    """The native-grid region as a boolean mask on the model grid (model axes), or None."""
    if region is None:
        return None
    native_region = native_mask(region, volume, "region")
    on_grid = pre.forward_mask((native_region > 0).astype(np.uint8), volume.geometry, mi.grid)
    grid_region = pre.to_model_axes(on_grid) > 0
    if not grid_region.any():
        raise InputError("the occlusion region is empty on the model grid")
    return grid_region


@dataclass
class _Run:
    """One method's run: its attribution, the observed model, the parameters as run."""

    attribution: Attribution
    observed: Any
    params: dict[str, Any]
    batch_info: dict[str, Any]
    tuned: str
    device: str = "cpu"


def _run_observed(
    m: Method,
    model: LoadedModel,
    mi: ModelInput,
    resolved: ResolvedTarget,
    p: dict[str, Any],
    *,
    layer: Any,
    region: np.ndarray | None,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    keep_prediction: bool,
    memory_budget_mb: float | None,
    tuning: str,
    device: Any = None,
) -> _Run:
    """Batch sizes under the budget, execution tuning, then the method on the observed model.

    With ``keep_prediction`` the model's output on the unperturbed input is kept from the
    run's own forward passes (:func:`.observe.observed`).
    """
    import torch

    from .budget import resolve_batch_params

    x, scored = mi.tensor(), resolved.scored
    if device is not None and device.type != "cpu":
        x, scored, layer = _on_device(x, scored, layer, device)
    p, batch_info = resolve_batch_params(m, p, scored, x, memory_budget_mb)
    tuned = "none"
    if tuning == "auto" and not x.is_cuda:
        from .tuning import channels_last, gradient_copy

        if m.family == "perturbation" and (copied := channels_last(scored)) is not None:
            scored, x, tuned = copied, x.contiguous(memory_format=torch.channels_last_3d), "channels_last_3d"
        elif m.plain_gradients and (copied := gradient_copy(scored)) is not None:
            scored, tuned = copied, "input_gradient_copy"
    grid_shape = tuple(mi.array.shape[1:])
    counts = m.cost(p, grid_shape, region=region) if region is not None else m.cost(p, grid_shape)  # type: ignore[call-arg]
    total = max(1, counts[0])
    counted = observed(scored, total, progress, cancel, reference=x.detach() if keep_prediction else None)
    with torch.enable_grad(), full_precision(x.device):
        try:
            attribution = m.run(counted, x, resolved.index, p, layer=layer, region=region)
        except (Cancelled, ValueError, MemoryError):
            raise
        except RuntimeError as exc:  # the model rejected its input (shape, channels, dtype)
            raise model_failure(model, tuple(x.shape), exc) from None
    if progress is not None:
        progress(counted.total, counted.total)
    attribution = dataclasses.replace(attribution, map=attribution.map.detach().cpu())
    return _Run(attribution, counted, p, batch_info, tuned, str(x.device))


def _on_device(x: Any, scored: Any, layer: Any, device: Any) -> tuple[Any, Any, Any]:
    """The input, a copy of the scored model and that copy's own layer (by name), on ``device``."""
    path = next((n for n, sub in scored.named_modules() if sub is layer), None) if layer is not None else None
    copied = on_device(scored, device)
    return x.to(device), copied, copied.get_submodule(path) if path is not None else layer


def _prediction_from_run(volume: Volume, model: LoadedModel, mi: ModelInput, run: _Run) -> Prediction:
    """The prediction from the run's own pass on the unperturbed input.

    Else a classifier's forward of its own (one sample: cheap), and for a segmenter (a full
    volume: as slow as the method's pass) a prediction marked not computed.
    """
    spec, warnings = model.spec, check_domain(volume, model.spec)
    if spec.task != "classification":
        labels = kept_labels(run.observed)
        out = Prediction(spec.name, spec.task, list(spec.classes), model_input=mi, warnings=warnings)
        if labels is None:
            out.computed = False
            return out
        return segmentation_prediction(volume, model, labels, mi, out)
    logits = run.observed.reference_output
    if logits is None:
        return predict(volume, model, model_input=mi)
    prediction = classification_prediction(model, logits, mi)
    prediction.warnings = warnings
    return prediction


def _assemble(
    volume: Volume,
    model: LoadedModel,
    pre: Any,
    mi: ModelInput,
    m: Method,
    resolved: ResolvedTarget,
    run: _Run,
    prediction: Prediction,
    grid_region: np.ndarray | None,
    clock: _Clock,
    region: np.ndarray | Volume | None = None,
) -> Explanation:
    """The map mapped back onto the scan's grid, with its prediction, warnings, provenance and
    the occlusion ``region`` (native grid) it was restricted to."""
    a = run.attribution
    converged = convergence_warning(
        m,
        run.params,
        a.delta,
        *(a.endpoints or (None, None)),
        normalisation=per_sample_normalisation(model.module) if a.endpoints is not None else None,
    )
    model_axes_map = a.map[0].sum(dim=0).numpy().astype(np.float32)
    native = pre.inverse(model_axes_map, mi)
    clock.lap("inverse_map")
    native_volume = volume.with_array(
        native.astype(np.float32), name=f"{volume.name} · {m.title} · {resolved.info['name']}"
    )
    native_volume.units = "attribution"
    result = Explanation(
        method=m.name,
        params=run.params,
        target=resolved.info,
        signed=m.signed,
        model_map=pre.from_model_axes(model_axes_map),
        model_grid=mi.grid,
        native=native_volume,
        prediction=prediction,
        timings=clock.timings(),
        convergence_delta=a.delta,
        provenance=_provenance(volume, model, mi, run, grid_region),
        roi=resolved.roi,
    )
    # what a careful user must know: the scan outside the model's domain, a map that misses completeness
    result.warnings = [*prediction.warnings, *([converged] if converged else []), *a.notes]
    if a.details:
        result.provenance["method_run"] = dict(a.details)
    if a.endpoints is not None:
        result.provenance["completeness"] = completeness_summary(a.delta, a.endpoints)
    result.region = None if region is None else native_mask(region, volume, "region") > 0
    return result


def _provenance(
    volume: Volume, model: LoadedModel, mi: ModelInput, run: _Run, grid_region: np.ndarray | None
) -> dict[str, Any]:
    """What reproduces the map: versions, model, input hashes, samples run, memory, tuning."""
    return {
        "versions": versions(),
        "model": model.provenance(),
        "input_sha256": hashlib.sha256(np.ascontiguousarray(volume.array).tobytes()).hexdigest(),
        "model_input_sha256": hashlib.sha256(mi.array.tobytes()).hexdigest(),
        "case_id": volume.case_id,
        "forward_samples": int(getattr(run.observed, "done", 0)),
        "memory": run.batch_info,
        "tuning": run.tuned,
        "device": run.device,
        **({"region_voxels": int(grid_region.sum())} if grid_region is not None else {}),
    }
