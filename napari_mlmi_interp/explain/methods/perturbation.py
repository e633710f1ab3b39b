"""Perturbation methods: the score drop when parts of the input are replaced by a baseline.

Forward passes only, batched under the memory budget (``perturbations_per_eval``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Attribution, Method

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["FeatureAblation", "Occlusion", "supervoxels"]


def _windows(params: dict[str, Any], shape: tuple[int, ...], factor: int = 1) -> int:
    """Captum's number of windows (:func:`.occlusion.occlusion_windows`), windows ``factor`` times larger."""
    from .occlusion import occlusion_windows

    return occlusion_windows(tuple(shape), int(params["window"]) * factor, int(params["stride"]) * factor)


class Occlusion(Method):
    """Captum's :class:`~captum.attr.Occlusion` with 3D windows, over a region or coarse-to-fine."""

    name = "occlusion"
    title = "Occlusion"
    family = "perturbation"
    elements = ("localization", "actionability", "model_transparency")
    signed = True
    params: ClassVar[dict[str, Any]] = {
        "window": 8,
        "stride": 4,
        "baseline": 0.0,
        "perturbations_per_eval": "auto",
        "strategy": "auto",
        "coarse_factor": 2,
        "refine_fraction": 0.05,
    }
    description = (
        "score drop when a 3D window is replaced by the baseline (Zeiler & Fergus 2014); "
        "strategy 'incremental' recomputes only what each window changes, the same map as "
        "'full' ('auto', the default: incremental on a CPU, the faster of the two on a GPU); "
        "'coarse_to_fine' "
        "approximates it, refining only where a coarse pass found signal"
    )
    batch_param = "perturbations_per_eval"
    accepts_region = True

    def cost(
        self, params: dict[str, Any], shape: tuple[int, ...], region: np.ndarray | None = None
    ) -> tuple[int, int]:
        """Forward samples: every window plus the unoccluded input; coarse-to-fine is an estimate
        (coarse windows, then the refined fraction grown by a window on each side), made exact
        once the coarse pass has chosen where to refine.

        With ``region`` (a boolean mask on the model grid) only the windows over the region's
        bounding box grown by one window count, as :func:`.occlusion.occlusion` runs them.
        """
        if region is not None:
            from .occlusion import _outer_box

            box = _outer_box(region, tuple(shape), int(params["window"]), int(params["stride"]))
            shape = tuple(b.stop - b.start for b in box)
        full = _windows(params, shape) + 1
        if params.get("strategy", "full") in ("auto", "full", "incremental"):
            return full, 0
        coarse = _windows(params, shape, int(params["coarse_factor"])) + 1
        grown = min(1.0, float(params["refine_fraction"]) * 8)
        return coarse + math.ceil(grown * full), 0

    def check(self, params: dict[str, Any]) -> None:
        from .occlusion import check_occlusion_params

        super().check(params)
        check_occlusion_params(params)

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        from .occlusion import occlusion

        info: dict[str, Any] = {}
        out = occlusion(module, x, target, params, region, info=info)
        note = info.pop("note", None)
        return Attribution(out, notes=[note] if note else [], details={"occlusion": info})


def supervoxels(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC supervoxels of the (first channel of the) input, as a Captum feature mask."""
    import torch
    from skimage.segmentation import slic

    image = x[0, 0].detach().cpu().numpy()
    labels = slic(
        image, n_segments=int(n_segments), compactness=float(compactness), channel_axis=None, start_label=0
    )
    mask = torch.from_numpy(labels).long()[None, None]
    return mask.expand(1, x.shape[1], *mask.shape[2:]).contiguous()


class FeatureAblation(Method):
    """Captum's :class:`~captum.attr.FeatureAblation` over SLIC supervoxels."""

    name = "feature_ablation"
    counts = ("n_segments",)
    title = "Supervoxel ablation"
    family = "perturbation"
    elements = ("localization", "physical_attribution", "actionability")
    signed = True
    params: ClassVar[dict[str, Any]] = {
        "n_segments": 150,
        "compactness": 0.1,
        "baseline": 0.0,
        "perturbations_per_eval": "auto",
    }
    description = "score drop when each SLIC supervoxel is replaced by the baseline"
    batch_param = "perturbations_per_eval"

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        return params["n_segments"] + 1, 0

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        mask = supervoxels(x, params["n_segments"], params["compactness"])
        out = ca.FeatureAblation(module).attribute(
            x,
            baselines=float(params["baseline"]),
            target=target,
            feature_mask=mask,
            perturbations_per_eval=params["perturbations_per_eval"],
        )
        return Attribution(out)
