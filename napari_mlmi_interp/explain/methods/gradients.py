"""Gradient methods: one backward pass of the score (or a few), by Captum's own classes."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Attribution, Method

__all__ = ["Deconvolution", "DeepLift", "GuidedBackprop", "InputXGradient", "Saliency", "SmoothGrad"]


class Saliency(Method):
    """``|d score / d input|``, Captum's :class:`~captum.attr.Saliency`."""

    name = "saliency"
    title = "Saliency"
    family = "gradient"
    plain_gradients = True
    elements = ("localization", "visual_recognizability")
    signed = False
    params: ClassVar[dict[str, Any]] = {"abs": True}
    description = "|d score / d input| (Simonyan et al. 2014)"

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        return Attribution(ca.Saliency(module).attribute(x, target=target, abs=params["abs"]))


class InputXGradient(Method):
    """The input times the gradient of the score, Captum's :class:`~captum.attr.InputXGradient`."""

    name = "input_x_gradient"
    title = "Input x Gradient"
    family = "gradient"
    plain_gradients = True
    elements = ("localization", "physical_attribution")
    signed = True
    description = "input times the gradient of the score"

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        return Attribution(ca.InputXGradient(module).attribute(x, target=target))


class SmoothGrad(Method):
    """Saliency averaged over noisy copies, Captum's :class:`~captum.attr.NoiseTunnel` over Saliency."""

    name = "smoothgrad"
    counts = ("nt_samples",)
    spreads = ("stdevs",)
    title = "SmoothGrad"
    family = "gradient"
    plain_gradients = True
    elements = ("localization", "visual_recognizability")
    signed = False
    params: ClassVar[dict[str, Any]] = {
        "nt_samples": 16,
        "stdevs": 0.15,
        "nt_samples_batch_size": "auto",
        "seed": 0,
    }
    description = "saliency averaged over noisy copies of the input (Smilkov et al. 2017)"
    batch_param = "nt_samples_batch_size"

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        return params["nt_samples"], params["nt_samples"]

    def batch_cap(self, params: dict[str, Any]) -> int:
        return params.get("nt_samples", 1)

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        # stdevs is relative to the input's range, as in Smilkov et al.
        sigma = float(params["stdevs"]) * float(x.max() - x.min())
        out = ca.NoiseTunnel(ca.Saliency(module)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=params["nt_samples"],
            nt_samples_batch_size=params["nt_samples_batch_size"],
            stdevs=sigma,
            target=target,
        )
        return Attribution(out)


class DeepLift(Method):
    """Contributions relative to a baseline, by Captum's :class:`~captum.attr.DeepLift`; complete."""

    name = "deeplift"
    overrides_nonlinearities = True
    title = "DeepLIFT"
    family = "gradient"
    elements = ("localization", "model_transparency")
    signed = True
    params: ClassVar[dict[str, Any]] = {"baseline": 0.0}
    description = "contributions relative to a baseline (Shrikumar et al. 2017)"
    completeness = True

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        return 2, 1

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        from .._captum import baseline_like, completeness_delta, endpoint_scores

        baseline = baseline_like(x, params["baseline"])
        out = ca.DeepLift(module).attribute(x, baselines=baseline, target=target)
        endpoints = endpoint_scores(module, x, baseline, target)
        return Attribution(out, completeness_delta(out, endpoints), endpoints)

    def completeness_miss(
        self, params: dict[str, Any], delta: float, share: str, relative: float, **context: Any
    ) -> str:
        return (
            f"DeepLIFT's map misses completeness: its convergence delta {abs(float(delta)):.4g} is {share}; "
            "the model has operations its rules do not cover, so compare with Integrated Gradients."
        )


class GuidedBackprop(Method):
    """Gradients with negative signals removed at each ReLU, Captum's :class:`~captum.attr.GuidedBackprop`."""

    name = "guided_backprop"
    overrides_nonlinearities = True
    title = "Guided Backpropagation"
    family = "gradient"
    elements = ("visual_recognizability",)
    signed = True
    description = "gradients with negative signals removed at every ReLU (Springenberg et al. 2015)"

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        return Attribution(ca.GuidedBackprop(module).attribute(x, target=target))


class Deconvolution(Method):
    """Gradients through ReLUs of the backward signal, Captum's :class:`~captum.attr.Deconvolution`."""

    name = "deconvolution"
    overrides_nonlinearities = True
    title = "Deconvolution"
    family = "gradient"
    elements = ("visual_recognizability",)
    signed = True
    description = "gradients through ReLUs of the backward signal (Zeiler & Fergus 2014)"

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        return Attribution(ca.Deconvolution(module).attribute(x, target=target))
