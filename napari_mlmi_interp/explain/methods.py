"""The attribution methods: what each is, what it serves, what it costs, and how Captum runs it.

Every method is Captum's own class (Captum does the work; nothing here re-implements
it), except GradCAM++ which Captum lacks: it is built on Captum's layer-gradient hooks.
Each declares its family, the framework elements it serves (see DESIGN.md), whether its
map is signed, its parameters with defaults, and a cost model in forward/backward passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import ELEMENTS  # re-exported: the registry's public names include it

__all__ = ["ELEMENTS", "METHODS", "Method", "get_method", "list_methods"]


@dataclass(frozen=True)
class Method:
    """One attribution method.

    Attributes
    ----------
    name : str
        Registry key (``"integrated_gradients"``).
    family : str
        ``gradient``, ``path`` (integrated along a path), ``class_activation`` or ``perturbation``.
    elements : tuple of str
        The framework elements it provides evidence for.
    signed : bool
        Whether the map has meaningful signs (diverging colormap) or is non-negative.
    params : dict
        Parameters and their defaults (voxel units on the model grid). Internal batch
        sizes default to ``"auto"``: the largest batch within the memory budget, from a
        measured forward pass (see :mod:`napari_mlmi_interp.explain.budget`).
    needs_layer : bool
        Uses the model's ``cam_layers[0]``.
    cost : callable
        ``cost(params, spatial_shape) -> (forward samples, backward samples)``.
    """

    name: str
    title: str
    family: str
    elements: tuple[str, ...]
    signed: bool
    params: dict[str, Any] = field(default_factory=dict)
    needs_layer: bool = False
    description: str = ""
    cost: Callable[[dict[str, Any], tuple[int, ...]], tuple[int, int]] = lambda p, s: (1, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "elements": list(self.elements),
            "signed": self.signed,
            "params": dict(self.params),
            "needs_layer": self.needs_layer,
            "description": self.description,
        }


def _windows(params: dict[str, Any], shape: tuple[int, ...], factor: int = 1) -> int:
    w, s = params["window"] * factor, params["stride"] * factor
    return math.prod(max(0, (n - min(w, n)) // s) + 1 for n in shape)


def _occlusion_cost(params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
    """Forward samples: every window plus the unoccluded input; coarse-to-fine is an estimate
    (coarse windows, then the refined fraction grown by a window on each side), made exact
    once the coarse pass has chosen where to refine."""
    full = _windows(params, shape) + 1
    if params.get("strategy", "full") == "full":
        return full, 0
    coarse = _windows(params, shape, int(params["coarse_factor"])) + 1
    grown = min(1.0, float(params["refine_fraction"]) * 8)
    return coarse + math.ceil(grown * full), 0


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "saliency",
            "Saliency",
            "gradient",
            ("localization", "visual_recognizability"),
            False,
            {"abs": True},
            description="|d score / d input| (Simonyan et al. 2014)",
        ),
        Method(
            "input_x_gradient",
            "Input x Gradient",
            "gradient",
            ("localization", "physical_attribution"),
            True,
            description="input times the gradient of the score",
        ),
        Method(
            "integrated_gradients",
            "Integrated Gradients",
            "path",
            ("localization", "model_transparency"),
            True,
            {"n_steps": 32, "method": "gausslegendre", "baseline": 0.0, "internal_batch_size": "auto"},
            description="gradients integrated from a baseline to the input; completeness "
            "(Sundararajan et al. 2017)",
            cost=lambda p, s: (p["n_steps"] + 2, p["n_steps"]),
        ),
        Method(
            "smoothgrad",
            "SmoothGrad",
            "gradient",
            ("localization", "visual_recognizability"),
            False,
            {"nt_samples": 16, "stdevs": 0.15, "nt_samples_batch_size": "auto", "seed": 0},
            description="saliency averaged over noisy copies of the input (Smilkov et al. 2017)",
            cost=lambda p, s: (p["nt_samples"], p["nt_samples"]),
        ),
        Method(
            "gradient_shap",
            "GradientSHAP",
            "path",
            ("localization", "model_transparency"),
            True,
            {"n_samples": 16, "stdevs": 0.1, "baseline": 0.0, "seed": 0},
            description="expected gradients between random baselines and the input (Lundberg & Lee 2017)",
            # n samples for the gradients, then inputs and baselines again for the convergence delta
            cost=lambda p, s: (3 * p["n_samples"], p["n_samples"]),
        ),
        Method(
            "deeplift",
            "DeepLIFT",
            "gradient",
            ("localization", "model_transparency"),
            True,
            {"baseline": 0.0},
            description="contributions relative to a baseline (Shrikumar et al. 2017)",
            cost=lambda p, s: (2, 1),
        ),
        Method(
            "guided_backprop",
            "Guided Backpropagation",
            "gradient",
            ("visual_recognizability",),
            True,
            description="gradients with negative signals removed at every ReLU (Springenberg et al. 2015)",
        ),
        Method(
            "deconvolution",
            "Deconvolution",
            "gradient",
            ("visual_recognizability",),
            True,
            description="gradients through ReLUs of the backward signal (Zeiler & Fergus 2014)",
        ),
        Method(
            "gradcam",
            "Grad-CAM",
            "class_activation",
            ("localization", "visual_recognizability", "actionability"),
            False,
            {"relu": True},
            needs_layer=True,
            description="layer activations weighted by pooled gradients, upsampled trilinearly "
            "(Selvaraju et al. 2017)",
        ),
        Method(
            "guided_gradcam",
            "Guided Grad-CAM",
            "class_activation",
            ("localization", "visual_recognizability"),
            True,
            needs_layer=True,
            description="guided backpropagation times Grad-CAM",
            cost=lambda p, s: (2, 2),
        ),
        Method(
            "gradcam_pp",
            "Grad-CAM++",
            "class_activation",
            ("localization", "visual_recognizability"),
            False,
            needs_layer=True,
            description="Grad-CAM with higher-order gradient weights (Chattopadhay et al. 2018); on Captum's "
            "layer hooks",
        ),
        Method(
            "occlusion",
            "Occlusion",
            "perturbation",
            ("localization", "actionability", "model_transparency"),
            True,
            {
                "window": 8,
                "stride": 4,
                "baseline": 0.0,
                "perturbations_per_eval": "auto",
                "strategy": "full",
                "coarse_factor": 2,
                "refine_fraction": 0.05,
            },
            description="score drop when a 3D window is replaced by the baseline (Zeiler & Fergus 2014); "
            "strategy 'coarse_to_fine' refines only where a coarse pass found signal",
            cost=_occlusion_cost,
        ),
        Method(
            "feature_ablation",
            "Supervoxel ablation",
            "perturbation",
            ("localization", "physical_attribution", "actionability"),
            True,
            {"n_segments": 150, "compactness": 0.1, "baseline": 0.0, "perturbations_per_eval": "auto"},
            description="score drop when each SLIC supervoxel is replaced by the baseline",
            cost=lambda p, s: (p["n_segments"] + 1, 0),
        ),
    ]
}


def get_method(name: str) -> Method:
    """The method called ``name``; a clear error listing the others otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}") from None


def list_methods(*, elements: tuple[str, ...] | None = None) -> list[Method]:
    """All methods, or those serving any of ``elements``."""
    if elements:
        unknown = set(elements) - set(ELEMENTS)
        if unknown:
            raise ValueError(f"elements must be among {', '.join(ELEMENTS)}, got {sorted(unknown)}")
        return [m for m in METHODS.values() if set(m.elements) & set(elements)]
    return list(METHODS.values())
