"""Path methods: gradients integrated from a baseline (or random baselines) to the input."""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import InputError
from .base import Attribution, Method

__all__ = ["GradientShap", "IntegratedGradients"]


class IntegratedGradients(Method):
    """Captum's :class:`~captum.attr.IntegratedGradients`, checked for completeness."""

    name = "integrated_gradients"
    title = "Integrated Gradients"
    family = "path"
    plain_gradients = True
    elements = ("localization", "model_transparency")
    signed = True
    params: ClassVar[dict[str, Any]] = {
        "n_steps": 32,
        "method": "gausslegendre",
        "baseline": 0.0,
        "internal_batch_size": "auto",
    }
    description = "gradients integrated from a baseline to the input; completeness (Sundararajan et al. 2017)"
    batch_param = "internal_batch_size"
    completeness = True
    counts = ("n_steps",)
    #: Captum's approximation rules for the path integral.
    rules = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")

    def check(self, params: dict[str, Any]) -> None:
        super().check(params)
        rule = params.get("method")
        if rule not in self.rules:
            names = ", ".join(self.rules)
            raise InputError(f"integrated_gradients method must be one of {names}, got {rule!r}")

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        return params["n_steps"] + 2, params["n_steps"]

    def batch_cap(self, params: dict[str, Any]) -> int:
        return params.get("n_steps", 1)

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        from .._captum import baseline_like, completeness_delta, endpoint_scores

        baseline = baseline_like(x, params["baseline"])
        out = ca.IntegratedGradients(module).attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=params["n_steps"],
            method=params["method"],
            internal_batch_size=params["internal_batch_size"],
        )
        endpoints = endpoint_scores(module, x, baseline, target)
        return Attribution(out, completeness_delta(out, endpoints), endpoints)

    def completeness_miss(
        self,
        params: dict[str, Any],
        delta: float,
        share: str,
        relative: float,
        *,
        tolerance: float,
        normalisation: str | None = None,
        **context: Any,
    ) -> str:
        """Too few steps: how many should do, unless the model normalises each input."""
        from ..convergence import suggested_steps

        n = int(params.get("n_steps", 0))
        head = (
            f"Integrated Gradients did not converge: its convergence delta {abs(float(delta)):.4g} is {share}"
        )
        more = suggested_steps(n, relative, tolerance)
        if normalisation:
            return (
                f"{head}; the model normalises each input ({normalisation}), so its score changes "
                f"only right next to a constant baseline and more steps may not help: try n_steps={more} "
                "once, and if the delta does not fall, prefer GradientSHAP, Saliency or Grad-CAM."
            )
        return f"{head}; raise n_steps from {n} to {more}."


class GradientShap(Method):
    """Expected gradients between random baselines and the input, Captum's :class:`~captum.attr.GradientShap`.

    Its completeness holds only in expectation over the random baselines, so it is not checked.
    """

    name = "gradient_shap"
    counts = ("n_samples",)
    spreads = ("stdevs",)
    title = "GradientSHAP"
    family = "path"
    elements = ("localization", "model_transparency")
    signed = True
    params: ClassVar[dict[str, Any]] = {"n_samples": 16, "stdevs": 0.1, "baseline": 0.0, "seed": 0}
    description = "expected gradients between random baselines and the input (Lundberg & Lee 2017)"

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        # n samples for the gradients, then inputs and baselines again for the convergence delta
        return 3 * params["n_samples"], params["n_samples"]

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca
        import torch

        from .._captum import baseline_like

        baselines = torch.cat([baseline_like(x, params["baseline"]), x.detach()])
        out, d = ca.GradientShap(module).attribute(
            x,
            baselines=baselines,
            n_samples=params["n_samples"],
            stdevs=params["stdevs"],
            target=target,
            return_convergence_delta=True,
        )
        return Attribution(out, float(d.abs().mean()))
