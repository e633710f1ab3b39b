"""explain(): any model + any volume -> an attribution map on the model grid and the native grid.

Progress and cancel work from any thread without touching Captum: the model is wrapped
in a module that counts the samples passing through ``forward`` (Captum batches them),
reports ``progress(done, total)`` with the total from the method's cost model, and raises
:class:`Cancelled` at the next batch once the token is set.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.volume import Geometry, Volume
from ..metrics.localization import peak_index
from ..models.domain import check_domain
from ..models.loading import LoadedModel
from ..models.predict import Prediction, classification_prediction, model_failure, predict, preprocessor_for
from ..models.preprocessing import ModelInput
from .cache import ResultCache
from .convergence import convergence_warning, per_sample_normalisation, relative_delta
from .methods import Method, get_method

__all__ = ["CancelToken", "Cancelled", "Explanation", "explain"]

ProgressCallback = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised inside the model's forward when the run is cancelled."""


class CancelToken:
    """Thread-safe cancel flag: ``token.cancel()`` from the GUI thread stops the run."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def _observed(
    module: Any,
    total: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    reference: Any = None,
) -> Any:
    import torch

    class Observed(torch.nn.Module):
        """The model, counting samples; numerically identical to it.

        ``total`` may be raised by a method once it knows its plan (coarse-to-fine occlusion);
        progress never goes backwards. When ``reference`` is given, the output for the first
        one-sample batch equal to it is kept (``reference_output``): the prediction comes
        free with the attribution's own forward pass.
        """

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.done = 0
            self.total = total
            self.reported = 0
            self.reference_output = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            out = self.inner(x)
            if (
                reference is not None
                and self.reference_output is None
                and x.shape == reference.shape
                and torch.equal(x.detach(), reference)
            ):
                self.reference_output = out.detach().clone()
            self.done += int(x.shape[0])
            if progress is not None:
                self.total = max(self.total, self.done)
                self.reported = max(self.reported, min(self.done, self.total))
                progress(self.reported, self.total)
            return out

    return Observed(module)


def _roi_score(module: Any, mask: np.ndarray, class_index: int, reduce: str) -> Any:
    """Segmentation target: a module scoring the sum (or mean) of one class's logits in a mask."""
    import torch

    weight = torch.from_numpy(mask.astype(np.float32))[None]
    if reduce == "mean":
        weight = weight / max(1.0, float(weight.sum()))

    class RoiScore(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.register_buffer("weight", weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.inner(x)
            return (logits[:, class_index] * self.weight).flatten(1).sum(dim=1, keepdim=True)

    return RoiScore()


@dataclass
class Explanation:
    """An attribution map with everything needed to show, score, export and reproduce it.

    Attributes
    ----------
    model_map : numpy.ndarray
        ``(z, y, x)`` float32 on the model grid (channels summed).
    model_grid : Geometry
        Where ``model_map`` lies, in LPS mm.
    native : Volume
        The map on the scan's own grid (same geometry as the scan).
    """

    method: str
    params: dict[str, Any]
    target: dict[str, Any]
    signed: bool
    model_map: np.ndarray
    model_grid: Geometry
    native: Volume
    prediction: Prediction
    timings: dict[str, float] = field(default_factory=dict)
    convergence_delta: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: What a careful user must know about this map (one sentence each): a poorly converged
    #: path integral, an input outside the model's declared domain. Printed on stderr by the
    #: CLI, kept in sidecars, shown in the Explain panel.
    warnings: list[str] = field(default_factory=list)

    def peak_lps(self) -> np.ndarray:
        """LPS mm of the native map's peak: its largest value, signed maps included.

        One definition for every panel, figure and export (:func:`metrics.peak_index`): the
        strongest evidence *for* the explained target. A signed map's most negative voxel is
        evidence against it and is not its peak.
        """
        return self.native.geometry.to_lps(peak_index(self.native.array))

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "target": self.target,
            "signed": self.signed,
            "peak_lps_mm": [round(float(v), 3) for v in self.peak_lps()],
            "prediction": self.prediction.to_dict(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "convergence_delta": self.convergence_delta,
            "warnings": list(self.warnings),
            "provenance": self.provenance,
        }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("napari-mlmi-interp", "torch", "captum", "monai", "SimpleITK"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def resolve_params(method: Method, params: dict[str, Any] | None) -> dict[str, Any]:
    """The method's defaults updated with ``params``; unknown names are an error."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(method.params))
    if unknown:
        raise ValueError(
            f"{method.name} has no parameter {', '.join(unknown)}; its parameters: "
            f"{', '.join(method.params) or 'none'}"
        )
    return {**method.params, **params}


def explain(
    volume: Volume,
    model: LoadedModel,
    method: str,
    *,
    target: int | str | None = None,
    roi: np.ndarray | Volume | None = None,
    roi_reduce: str = "sum",
    region: np.ndarray | Volume | None = None,
    params: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    model_input: ModelInput | None = None,
    cache: ResultCache | None = None,
    memory_budget_mb: float | None = None,
    tuning: str = "auto",
) -> Explanation:
    """Attribute ``model``'s decision on ``volume`` with ``method``.

    Parameters
    ----------
    target : int or str, optional
        Classification: a class index or name (default: the predicted class).
        Segmentation: the class whose logits are summed in the ROI (default 1).
    roi : array or Volume, optional
        Segmentation only: a native-grid mask (default: the model's own prediction of the
        target class). Mapped onto the model grid by nearest neighbour.
    region : array or Volume, optional
        Occlusion only: a native-grid mask; only windows around it are occluded (the map
        is 0 elsewhere). Speeds occlusion up when the question is about one region.
    progress : callable, optional
        ``progress(done, total)`` in samples through the model; from the calling thread.
    cancel : CancelToken, optional
        Set it from any thread to stop within one batch (:class:`Cancelled` is raised).
    cache : ResultCache, optional
        Return a stored result for the same (model, preprocessed input, method, parameters,
        target request) without running the model; store new results.
    memory_budget_mb : float, optional
        Budget for ``"auto"`` internal batch sizes (default: a quarter of free memory).
    tuning : {"auto", "off"}
        Execution tuning measured to pay off (see :mod:`.tuning`): with ``"auto"``,
        perturbation methods on a CPU run a channels-last copy of a 3D CNN (forward passes
        1.25-1.3x faster; outputs equal to 1e-6 relative). ``"off"`` runs the model as given.

    Raises
    ------
    ValueError
        Unknown method, parameter, class name, or a layer method on a model without
        ``cam_layers``.
    Cancelled
        When the token was set.
    """
    import torch

    spec = model.spec
    m = get_method(method)
    p = resolve_params(m, params)
    if roi_reduce not in ("sum", "mean"):
        raise ValueError(f"roi_reduce must be 'sum' or 'mean', got {roi_reduce!r}")
    t0 = time.perf_counter()
    pre = preprocessor_for(model)
    reusable = model_input is not None and model_input.made_from(volume, (spec.input, spec.normalization))
    mi = model_input if reusable else pre.forward(volume)
    t_pre = time.perf_counter()
    key = None
    if cache is not None:
        key = _cache_key(volume, model, mi, m, p, target, roi, roi_reduce, region)
        hit = cache.get(key)
        if hit is not None:
            if progress is not None:
                progress(1, 1)
            return _from_cache(hit, volume, model, mi, time.perf_counter() - t0)
    # A classifier with a given target needs no separate forward: the prediction is taken
    # from the attribution's own pass on the unperturbed input when it makes one.
    deferred = spec.task == "classification" and target is not None
    prediction = None if deferred else predict(volume, model, model_input=mi)
    t_pred = time.perf_counter()

    module = model.module
    if spec.task == "classification":
        index = _class_index(target, spec.classes, default=None if deferred else prediction.predicted)
        tgt = {"kind": "class", "index": index, "name": spec.classes[index]}
        scored, target_index = module, index
    else:
        index = _class_index(target, spec.classes, default=1 if len(spec.classes) > 1 else 0)
        if roi is None:
            native_mask = (prediction.segmentation.array == index).astype(np.uint8)
            source = "model prediction"
        else:
            native_mask = np.asarray(roi.array if isinstance(roi, Volume) else roi)
            source = "given mask"
            if native_mask.shape != volume.shape:
                raise ValueError(f"roi shape {native_mask.shape} does not match the scan {volume.shape}")
        grid_mask = pre.to_model_axes(
            pre.forward_mask((native_mask > 0).astype(np.uint8), volume.geometry, mi.grid)
        )
        if not grid_mask.any():
            raise ValueError(f"the ROI ({source}) is empty on the model grid: nothing to explain")
        tgt = {
            "kind": "roi",
            "class_index": index,
            "name": spec.classes[index],
            "roi": source,
            "reduce": roi_reduce,
            "roi_voxels": int(grid_mask.sum()),
        }
        scored, target_index = _roi_score(module, grid_mask, index, roi_reduce), 0

    layer = None
    if m.needs_layer:
        if not spec.cam_layers:
            raise ValueError(f"{m.title} needs a layer: the spec of '{spec.name}' lists no cam_layers")
        layers = dict(module.named_modules())
        if spec.cam_layers[0] not in layers:
            raise ValueError(
                f"model '{spec.name}' has no layer {spec.cam_layers[0]!r} (from its spec's cam_layers)"
            )
        layer = layers[spec.cam_layers[0]]

    from .budget import resolve_batch_params
    from .captum_run import attribute

    grid_region = None
    if region is not None:
        if m.name != "occlusion":
            raise ValueError(f"a region restricts occlusion only, not {m.title}")
        native_region = np.asarray(region.array if isinstance(region, Volume) else region)
        if native_region.shape != volume.shape:
            raise ValueError(f"region shape {native_region.shape} does not match the scan {volume.shape}")
        on_grid = pre.forward_mask((native_region > 0).astype(np.uint8), volume.geometry, mi.grid)
        grid_region = pre.to_model_axes(on_grid) > 0
        if not grid_region.any():
            raise ValueError("the occlusion region is empty on the model grid")

    x = mi.tensor()
    p, batch_info = resolve_batch_params(m.name, p, scored, x, memory_budget_mb)
    if tuning not in ("auto", "off"):
        raise ValueError(f"tuning must be 'auto' or 'off', got {tuning!r}")
    tuned = None
    if tuning == "auto" and m.family == "perturbation" and not x.is_cuda:
        from .tuning import channels_last

        tuned = channels_last(scored)
        if tuned is not None:
            scored, x = tuned, x.contiguous(memory_format=torch.channels_last_3d)
    total = max(1, m.cost(p, tuple(mi.array.shape[1:]))[0])
    observed = _observed(scored, total, progress, cancel, reference=x.detach() if deferred else None)
    with torch.enable_grad():
        try:
            attr, delta, endpoints = attribute(m, observed, x, target_index, p, layer, grid_region)
        except (Cancelled, ValueError, MemoryError):
            raise
        except RuntimeError as exc:  # the model rejected its input (shape, channels, dtype)
            raise model_failure(model, tuple(x.shape), exc) from None
    if progress is not None:
        progress(observed.total, observed.total)
    t_attr = time.perf_counter()
    if prediction is None:
        logits = observed.reference_output
        if logits is not None:
            prediction = classification_prediction(model, logits, mi)
            prediction.warnings = check_domain(volume, spec)
        else:
            prediction = predict(volume, model, model_input=mi)
    converged = convergence_warning(
        m.name,
        p,
        delta,
        *(endpoints or (None, None)),
        normalisation=per_sample_normalisation(module) if endpoints is not None else None,
    )

    model_axes_map = attr[0].sum(dim=0).numpy().astype(np.float32)
    native = pre.inverse(model_axes_map, mi)
    t_inv = time.perf_counter()
    name = f"{volume.name} · {m.title} · {tgt['name']}"
    native_volume = volume.with_array(native.astype(np.float32), name=name)
    native_volume.units = "attribution"
    result = Explanation(
        method=m.name,
        params=p,
        target=tgt,
        signed=m.signed,
        model_map=pre.from_model_axes(model_axes_map),
        model_grid=mi.grid,
        native=native_volume,
        prediction=prediction,
        timings={
            "preprocess": t_pre - t0,
            "predict": t_pred - t_pre,
            "attribute": t_attr - t_pred,
            "inverse_map": t_inv - t_attr,
            "total": t_inv - t0,
        },
        convergence_delta=delta,
        provenance={
            "versions": _versions(),
            "model": model.provenance(),
            "input_sha256": hashlib.sha256(np.ascontiguousarray(volume.array).tobytes()).hexdigest(),
            "model_input_sha256": hashlib.sha256(mi.array.tobytes()).hexdigest(),
            "case_id": volume.case_id,
            "forward_samples": int(getattr(observed, "done", 0)),
            "memory": batch_info,
            "tuning": "channels_last_3d" if tuned is not None else "none",
            **({"region_voxels": int(grid_region.sum())} if grid_region is not None else {}),
        },
    )
    # what a careful user must know: the scan outside the model's domain, a map that misses
    # completeness (set after construction: the provenance literal above is shared ground)
    result.warnings = [*prediction.warnings, *([converged] if converged else [])]
    if endpoints is not None:
        result.provenance["completeness"] = _completeness(delta, endpoints)
    if cache is not None and key is not None:
        _store(cache, key, result)
    return result


def _completeness(delta: float | None, endpoints: tuple[float, float]) -> dict[str, float | None]:
    """The target score at the input and the baseline, and the delta as a share of their difference."""
    fx, fb = endpoints
    rel = relative_delta(delta or 0.0, fx, fb)
    return {
        "score_input": fx,
        "score_baseline": fb,
        "relative_delta": None if rel == float("inf") else round(rel, 6),
    }


def _mask_digest(mask: np.ndarray | Volume | None) -> str | None:
    if mask is None:
        return None
    a = np.ascontiguousarray(np.asarray(mask.array if isinstance(mask, Volume) else mask) > 0)
    return hashlib.sha256(a.tobytes()).hexdigest()


def _cache_key(volume, model, mi, method, params, target, roi, roi_reduce, region) -> str:
    from dataclasses import asdict

    from .. import __version__
    from .cache import cache_key

    roi_part, region_part = _mask_digest(roi), _mask_digest(region)
    return cache_key(
        {
            "version": __version__,
            "model_sha256": model.sha256,
            "model_input_sha256": hashlib.sha256(mi.array.tobytes()).hexdigest(),
            "model_grid": [mi.grid.index_to_lps.round(9).tolist(), list(mi.grid.shape)],
            "native_grid": [volume.geometry.index_to_lps.round(9).tolist(), list(volume.shape)],
            "preprocessing": [asdict(model.spec.input), asdict(model.spec.normalization)],
            "method": method.name,
            "params": params,
            "target": "predicted" if target is None else str(target),
            "roi": roi_part,
            "roi_reduce": roi_reduce,
            "region": region_part,
            "entry_format": 2,  # 2: entries keep the map's warnings
        }
    )


def _store(cache: ResultCache, key: str, result: Explanation) -> None:
    pred = result.prediction
    arrays = {"model_map": result.model_map, "native_map": result.native.array}
    if pred.segmentation is not None:
        arrays["segmentation"] = pred.segmentation.array
    meta = {
        "method": result.method,
        "params": result.params,
        "target": result.target,
        "signed": result.signed,
        # not the scan's name (a file name may be a patient's): "<method title> · <target>"
        "native_suffix": result.native.name.rsplit(" · ", 2)[-2:],
        "prediction": {
            "probabilities": None if pred.probabilities is None else pred.probabilities.tolist(),
            "predicted": pred.predicted,
            "label": pred.label,
            "volumes_ml": pred.volumes_ml,
        },
        "timings": result.timings,
        "convergence_delta": result.convergence_delta,
        # the map's own warnings; domain warnings are recomputed from the scan on a hit (the key
        # holds the normalised input, which a rescaled scan shares)
        "map_warnings": [w for w in result.warnings if w not in pred.warnings],
        "provenance": result.provenance,
    }
    cache.put(key, arrays, meta)


def _from_cache(hit, volume: Volume, model: LoadedModel, mi: ModelInput, seconds: float) -> Explanation:
    arrays, meta = hit
    spec = model.spec
    pm = meta["prediction"]
    prediction = Prediction(
        spec.name,
        spec.task,
        list(spec.classes),
        probabilities=None if pm["probabilities"] is None else np.asarray(pm["probabilities"]),
        predicted=pm["predicted"],
        label=pm["label"],
        volumes_ml=dict(pm["volumes_ml"]),
        model_input=mi,
        warnings=check_domain(volume, spec),
    )
    if "segmentation" in arrays:
        prediction.segmentation = volume.with_array(
            arrays["segmentation"], name=f"{volume.name} · {spec.name} segmentation"
        )
    name = " · ".join([volume.name, *meta.get("native_suffix", [])])
    native = volume.with_array(arrays["native_map"].astype(np.float32), name=name)
    native.units = "attribution"
    return Explanation(
        method=meta["method"],
        params=meta["params"],
        target=meta["target"],
        signed=meta["signed"],
        model_map=arrays["model_map"],
        model_grid=mi.grid,
        native=native,
        prediction=prediction,
        timings={**meta["timings"], "total": seconds},
        convergence_delta=meta["convergence_delta"],
        provenance={**meta["provenance"], "cache": "hit"},
        warnings=[*prediction.warnings, *meta.get("map_warnings", [])],
    )


def _class_index(target: int | str | None, classes: list[str], *, default: int | None) -> int:
    if target is None:
        if default is None:
            raise ValueError("a target class is needed")
        return int(default)
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            raise ValueError(f"target must be one of the classes {classes}, got {target!r}")
        return classes.index(target)
    index = int(target)
    if not 0 <= index < len(classes):
        raise ValueError(f"target index must be in 0..{len(classes) - 1}, got {index}")
    return index
