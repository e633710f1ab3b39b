"""Run one method through Captum on a prepared input. Pure torch + Captum, no geometry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .methods import Method

__all__ = ["attribute", "gradcam_pp", "seeded", "supervoxels"]


def _baseline(x: torch.Tensor, value: float) -> torch.Tensor:
    return torch.full_like(x, float(value))


def gradcam_pp(module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM++ at the layer's resolution, from Captum's layer gradients and activations.

    Weights ``w_c = sum(alpha * relu(g))`` with ``alpha = g^2 / (2 g^2 + sum(A) g^3)``
    (the closed form for an exponential score used by Chattopadhay et al. and by
    pytorch-grad-cam); map ``relu(sum_c w_c A_c)``.
    """
    from captum._utils.gradient import compute_layer_gradients_and_eval

    grads, acts = compute_layer_gradients_and_eval(module, layer, x, target)
    g, a = grads[0], acts[0]
    dims = tuple(range(2, g.dim()))
    g2, g3 = g**2, g**3
    denom = 2 * g2 + a.sum(dim=dims, keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * torch.relu(g)).sum(dim=dims, keepdim=True)
    return torch.relu((weights * a).sum(dim=1, keepdim=True))


def attribute(
    method: Method,
    module: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    params: dict[str, Any],
    layer: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, float | None]:
    """Attribution of ``module``'s output ``target`` to ``x``, on the input grid.

    Returns
    -------
    (tensor, delta)
        The map ``(1, C, *spatial)`` (class-activation maps have ``C = 1``, upsampled
        trilinearly to the input grid) and the convergence delta where Captum defines one.
    """
    if "seed" in params:  # stochastic methods: reproducible, and the caller's RNG state is untouched
        with seeded(int(params["seed"])):
            return _attribute(method, module, x, target, params, layer)
    return _attribute(method, module, x, target, params, layer)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch and numpy's global RNG (Captum draws from both), restoring both afterwards."""
    # Captum's GradientShap draws from numpy's *global* RNG, so that is the one to seed
    state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(state)  # noqa: NPY002


def _attribute(
    method: Method,
    module: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    params: dict[str, Any],
    layer: torch.nn.Module | None,
) -> tuple[torch.Tensor, float | None]:
    import captum.attr as ca

    p = params
    spatial = tuple(x.shape[2:])
    name = method.name
    delta = None
    if name == "saliency":
        out = ca.Saliency(module).attribute(x, target=target, abs=p["abs"])
    elif name == "input_x_gradient":
        out = ca.InputXGradient(module).attribute(x, target=target)
    elif name == "integrated_gradients":
        out, d = ca.IntegratedGradients(module).attribute(
            x,
            baselines=_baseline(x, p["baseline"]),
            target=target,
            n_steps=p["n_steps"],
            method=p["method"],
            internal_batch_size=p["internal_batch_size"],
            return_convergence_delta=True,
        )
        delta = float(d.abs().max())
    elif name == "smoothgrad":
        # stdevs is relative to the input's range, as in Smilkov et al.
        sigma = float(p["stdevs"]) * float(x.max() - x.min())
        out = ca.NoiseTunnel(ca.Saliency(module)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=p["nt_samples"],
            nt_samples_batch_size=p["nt_samples_batch_size"],
            stdevs=sigma,
            target=target,
        )
    elif name == "gradient_shap":
        baselines = torch.cat([_baseline(x, p["baseline"]), x.detach()])
        out, d = ca.GradientShap(module).attribute(
            x,
            baselines=baselines,
            n_samples=p["n_samples"],
            stdevs=p["stdevs"],
            target=target,
            return_convergence_delta=True,
        )
        delta = float(d.abs().mean())
    elif name == "deeplift":
        out, d = ca.DeepLift(module).attribute(
            x, baselines=_baseline(x, p["baseline"]), target=target, return_convergence_delta=True
        )
        delta = float(d.abs().max())
    elif name == "guided_backprop":
        out = ca.GuidedBackprop(module).attribute(x, target=target)
    elif name == "deconvolution":
        out = ca.Deconvolution(module).attribute(x, target=target)
    elif name == "gradcam":
        cam = ca.LayerGradCam(module, layer).attribute(x, target=target, relu_attributions=p["relu"])
        out = ca.LayerAttribution.interpolate(cam, spatial, interpolate_mode="trilinear")
    elif name == "guided_gradcam":
        out = ca.GuidedGradCam(module, layer).attribute(x, target=target, interpolate_mode="trilinear")
    elif name == "gradcam_pp":
        cam = gradcam_pp(module, layer, x, target)
        out = ca.LayerAttribution.interpolate(cam, spatial, interpolate_mode="trilinear")
    elif name == "occlusion":
        w, s = int(p["window"]), int(p["stride"])
        out = ca.Occlusion(module).attribute(
            x,
            sliding_window_shapes=(x.shape[1], w, w, w),
            strides=(x.shape[1], s, s, s),
            baselines=float(p["baseline"]),
            target=target,
            perturbations_per_eval=p["perturbations_per_eval"],
        )
    elif name == "feature_ablation":
        mask = supervoxels(x, p["n_segments"], p["compactness"])
        out = ca.FeatureAblation(module).attribute(
            x,
            baselines=float(p["baseline"]),
            target=target,
            feature_mask=mask,
            perturbations_per_eval=p["perturbations_per_eval"],
        )
    else:  # pragma: no cover - the registry and this switch are kept in step by a test
        raise ValueError(f"no runner for method {name!r}")
    return out.detach(), delta


def supervoxels(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC supervoxels of the (first channel of the) input, as a Captum feature mask."""
    from skimage.segmentation import slic

    image = x[0, 0].detach().cpu().numpy()
    labels = slic(
        image, n_segments=int(n_segments), compactness=float(compactness), channel_axis=None, start_label=0
    )
    mask = torch.from_numpy(labels).long()[None, None]
    return mask.expand(1, x.shape[1], *mask.shape[2:]).contiguous()
