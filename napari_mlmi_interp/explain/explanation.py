"""The result of :func:`~napari_mlmi_interp.explain.explain`, and how it is kept in the result cache.

An :class:`Explanation` is the attribution map on the model grid and on the scan's own
grid, with the prediction, the target, timings, warnings and provenance. A cache entry
holds its arrays and a JSON ``meta``; the key (:func:`cache_entry_key`) is computed before
the model runs, from everything that decides the map.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.volume import Geometry, Volume
from ..metrics.localization import peak_index
from ..models.domain import check_domain
from ..models.loading import LoadedModel
from ..models.predict import Prediction
from ..models.preprocessing import ModelInput
from .cache import ResultCache
from .convergence import relative_delta

__all__ = [
    "Explanation",
    "cache_entry_key",
    "completeness_summary",
    "from_cache_entry",
    "store_in_cache",
    "versions",
]


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
    roi : numpy.ndarray or None
        A segmentation target's mask on the scan's grid (z, y, x, boolean): the region whose
        class score was explained (the model evidence reruns the same question); None for a
        class target.
    region : numpy.ndarray or None
        The region occlusion was restricted to, on the scan's grid (z, y, x, boolean); None
        when the method ran on the whole volume (the model evidence's randomised models are
        restricted to the same region).
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
    roi: np.ndarray | None = None
    region: np.ndarray | None = None

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


def versions() -> dict[str, str]:
    """Installed versions of the packages a map depends on (``"absent"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("napari-mlmi-interp", "torch", "captum", "monai", "SimpleITK"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def completeness_summary(delta: float | None, endpoints: tuple[float, float]) -> dict[str, float | None]:
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


def cache_entry_key(
    volume: Volume,
    model: LoadedModel,
    mi: ModelInput,
    method: str,
    params: dict[str, Any],
    target: int | str | None,
    roi: np.ndarray | Volume | None,
    roi_reduce: str,
    region: np.ndarray | Volume | None,
    roi_label: int | str | None = None,
) -> str:
    """The key of a result: model, preprocessed input, grids, preprocessing, method, parameters, target."""
    from dataclasses import asdict

    from .. import __version__
    from .cache import cache_key

    return cache_key(
        {
            "version": __version__,
            "model_sha256": model.sha256,
            "model_input_sha256": hashlib.sha256(mi.array.tobytes()).hexdigest(),
            "model_grid": [mi.grid.index_to_lps.round(9).tolist(), list(mi.grid.shape)],
            "native_grid": [volume.geometry.index_to_lps.round(9).tolist(), list(volume.shape)],
            "preprocessing": [asdict(model.spec.input), asdict(model.spec.normalization)],
            "method": method,
            "params": params,
            "target": "predicted" if target is None else str(target),
            "roi": _mask_digest(roi),
            "roi_reduce": roi_reduce,
            "region": _mask_digest(region),
            **({"roi_label": str(roi_label)} if roi_label is not None else {}),
            "entry_format": 2,  # 2: entries keep the map's warnings
        }
    )


def store_in_cache(cache: ResultCache, key: str, result: Explanation) -> None:
    """Keep ``result`` under ``key``: its maps, and what :func:`from_cache_entry` needs besides the scan."""
    pred = result.prediction
    arrays = {"model_map": result.model_map, "native_map": result.native.array}
    if pred.segmentation is not None:
        arrays["segmentation"] = pred.segmentation.array
    if result.roi is not None:
        arrays["roi"] = np.asarray(result.roi, dtype=np.uint8)
    if result.region is not None:
        arrays["region"] = np.asarray(result.region, dtype=np.uint8)
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
            "computed": pred.computed,
        },
        "timings": result.timings,
        "convergence_delta": result.convergence_delta,
        # the map's own warnings; domain warnings are recomputed from the scan on a hit (the key
        # holds the normalised input, which a rescaled scan shares)
        "map_warnings": [w for w in result.warnings if w not in pred.warnings],
        "provenance": result.provenance,
    }
    cache.put(key, arrays, meta)


def from_cache_entry(
    hit: tuple[dict[str, np.ndarray], dict[str, Any]],
    volume: Volume,
    model: LoadedModel,
    mi: ModelInput,
    seconds: float,
) -> Explanation:
    """The :class:`Explanation` a cache entry holds, on ``volume``'s grid (domain warnings recomputed)."""
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
        computed=pm.get("computed", True),
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
        roi=arrays["roi"] > 0 if "roi" in arrays else None,
        region=arrays["region"] > 0 if "region" in arrays else None,
    )
