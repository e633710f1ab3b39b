"""Class-activation methods: a layer's activations weighted by the score's gradients.

Each map is computed at the layer's resolution and upsampled trilinearly to the input grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .base import Attribution, Method

if TYPE_CHECKING:
    import torch

__all__ = ["GradCam", "GradCamPlusPlus", "GuidedGradCam", "gradcam_pp"]


def _upsampled(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    import captum.attr as ca

    return ca.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")


class GradCam(Method):
    """Captum's :class:`~captum.attr.LayerGradCam`, upsampled to the input grid."""

    name = "gradcam"
    title = "Grad-CAM"
    family = "class_activation"
    elements = ("localization", "visual_recognizability", "actionability")
    signed = False
    params: ClassVar[dict[str, Any]] = {"relu": True}
    needs_layer = True
    description = (
        "layer activations weighted by pooled gradients, upsampled trilinearly (Selvaraju et al. 2017)"
    )

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        cam = ca.LayerGradCam(module, layer).attribute(x, target=target, relu_attributions=params["relu"])
        return Attribution(_upsampled(cam, x))


class GuidedGradCam(Method):
    """Captum's :class:`~captum.attr.GuidedGradCam`: guided backpropagation times Grad-CAM."""

    name = "guided_gradcam"
    overrides_nonlinearities = True
    title = "Guided Grad-CAM"
    family = "class_activation"
    elements = ("localization", "visual_recognizability")
    signed = True
    needs_layer = True
    description = "guided backpropagation times Grad-CAM"

    def cost(self, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, int]:
        return 2, 2

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        import captum.attr as ca

        out = ca.GuidedGradCam(module, layer).attribute(x, target=target, interpolate_mode="trilinear")
        return Attribution(out)


def gradcam_pp(module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM++ at the layer's resolution, from Captum's layer gradients and activations.

    Weights ``w_c = sum(alpha * relu(g))`` with ``alpha = g^2 / (2 g^2 + sum(A) g^3)``
    (the closed form for an exponential score used by Chattopadhay et al. and by
    pytorch-grad-cam); map ``relu(sum_c w_c A_c)``.
    """
    import torch
    from captum._utils.gradient import compute_layer_gradients_and_eval

    grads, acts = compute_layer_gradients_and_eval(module, layer, x, target)
    g, a = grads[0], acts[0]
    dims = tuple(range(2, g.dim()))
    g2, g3 = g**2, g**3
    denom = 2 * g2 + a.sum(dim=dims, keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * torch.relu(g)).sum(dim=dims, keepdim=True)
    return torch.relu((weights * a).sum(dim=1, keepdim=True))


class GradCamPlusPlus(Method):
    """Grad-CAM++, which Captum lacks: :func:`gradcam_pp` on Captum's layer-gradient hooks."""

    name = "gradcam_pp"
    title = "Grad-CAM++"
    family = "class_activation"
    elements = ("localization", "visual_recognizability")
    signed = False
    needs_layer = True
    description = (
        "Grad-CAM with higher-order gradient weights (Chattopadhay et al. 2018); on Captum's layer hooks"
    )

    def attribute(self, module, x, target, params, *, layer=None, region=None) -> Attribution:
        return Attribution(_upsampled(gradcam_pp(module, layer, x, target), x))
