"""Run one method through Captum on a prepared input. Pure torch + Captum, no geometry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .methods import Method

__all__ = ["attribute", "gradcam_pp", "occlusion", "seeded", "supervoxels"]


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
    region: np.ndarray | None = None,
) -> tuple[torch.Tensor, float | None, tuple[float, float] | None]:
    """Attribution of ``module``'s output ``target`` to ``x``, on the input grid.

    ``region`` (a boolean mask on the input grid) restricts occlusion to the windows around it.

    Returns
    -------
    (tensor, delta, endpoints)
        The map ``(1, C, *spatial)`` (class-activation maps have ``C = 1``, upsampled
        trilinearly to the input grid), the convergence delta where Captum defines one, and
        for methods promising completeness (Integrated Gradients, DeepLIFT) the target score
        ``(F(x), F(baseline))`` at the input and the baseline (else None).
    """
    if "seed" in params:  # stochastic methods: reproducible, and the caller's RNG state is untouched
        with seeded(int(params["seed"])):
            return _attribute(method, module, x, target, params, layer, region)
    return _attribute(method, module, x, target, params, layer, region)


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
    region: np.ndarray | None = None,
) -> tuple[torch.Tensor, float | None, tuple[float, float] | None]:
    import captum.attr as ca

    p = params
    spatial = tuple(x.shape[2:])
    name = method.name
    delta = None
    endpoints = None
    if name == "saliency":
        out = ca.Saliency(module).attribute(x, target=target, abs=p["abs"])
    elif name == "input_x_gradient":
        out = ca.InputXGradient(module).attribute(x, target=target)
    elif name == "integrated_gradients":
        baseline = _baseline(x, p["baseline"])
        out = ca.IntegratedGradients(module).attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=p["n_steps"],
            method=p["method"],
            internal_batch_size=p["internal_batch_size"],
        )
        endpoints = _endpoint_scores(module, x, baseline, target)
        delta = _delta(out, endpoints)
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
        baseline = _baseline(x, p["baseline"])
        out = ca.DeepLift(module).attribute(x, baselines=baseline, target=target)
        endpoints = _endpoint_scores(module, x, baseline, target)
        delta = _delta(out, endpoints)
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
        out = occlusion(module, x, target, p, region)
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
    return out.detach(), delta, endpoints


def _endpoint_scores(
    module: torch.nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: int
) -> tuple[float, float]:
    """``(F(x), F(baseline))``: the target score at the input and at the baseline.

    These are the two forward passes Captum makes for its convergence delta, made here (one
    sample each, input first, so the engine can take the prediction from the first) to keep
    the scores: the delta alone cannot say how large it is relative to the score change.
    """
    from captum._utils.common import _run_forward

    with torch.no_grad():
        fx = _run_forward(module, x, target=target)
        fb = _run_forward(module, baseline, target=target)
    return float(fx.reshape(-1)[0]), float(fb.reshape(-1)[0])


def _delta(attributions: torch.Tensor, endpoints: tuple[float, float]) -> float:
    """Captum's convergence delta, ``|sum(map) - (F(x) - F(baseline))|``, for one sample."""
    total = float(attributions.detach().double().sum())
    return abs(total - (endpoints[0] - endpoints[1]))


def supervoxels(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC supervoxels of the (first channel of the) input, as a Captum feature mask."""
    from skimage.segmentation import slic

    image = x[0, 0].detach().cpu().numpy()
    labels = slic(
        image, n_segments=int(n_segments), compactness=float(compactness), channel_axis=None, start_label=0
    )
    mask = torch.from_numpy(labels).long()[None, None]
    return mask.expand(1, x.shape[1], *mask.shape[2:]).contiguous()


# --- occlusion: full, ROI-restricted, coarse-to-fine -------------------------------------------

Box = tuple[slice, ...]


class _Pasted(torch.nn.Module):
    """``module`` seen through a crop: the crop is pasted back into the full input first.

    Captum's Occlusion then slides its windows over the crop only, while the model still
    sees the whole volume, so a window's score drop is exactly the one it has in the full run.
    """

    def __init__(self, inner: torch.nn.Module, x: torch.Tensor, box: Box) -> None:
        super().__init__()
        self.inner, self.x, self.box = inner, x, box

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        full = self.x.expand(crop.shape[0], *self.x.shape[1:]).clone()
        full[(slice(None), slice(None), *self.box)] = crop
        return self.inner(full)


def _aligned_box(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...], w: int, s: int) -> Box:
    """``[lo, hi)`` grown to the stride lattice (so windows coincide with a full run's) and >= w."""
    out = []
    for a, b, n in zip(lo, hi, shape, strict=True):
        a = max(0, (int(a) // s) * s)
        b = min(n, max(int(b), a + w))
        a = max(0, min(a, b - w))
        out.append(slice(a, b))
    return tuple(out)


def _occlude(
    module: torch.nn.Module, x: torch.Tensor, target: int, box: Box | None, w: int, s: int, p: dict
) -> torch.Tensor:
    """Captum Occlusion with cubic windows ``w`` and strides ``s``, over ``box`` (all when None)."""
    import captum.attr as ca

    c = x.shape[1]
    kwargs = {
        "sliding_window_shapes": (c, *[min(w, n) for n in x.shape[2:]]),
        "strides": (c, s, s, s),
        "baselines": float(p["baseline"]),
        "target": target,
        "perturbations_per_eval": p["perturbations_per_eval"],
    }
    if box is None:
        return ca.Occlusion(module).attribute(x, **kwargs)
    crop = x[(slice(None), slice(None), *box)].contiguous()
    kwargs["sliding_window_shapes"] = (c, *[min(w, b.stop - b.start) for b in box])
    return ca.Occlusion(_Pasted(module, x, box)).attribute(crop, **kwargs)


def occlusion_windows(shape: tuple[int, ...], w: int, s: int) -> int:
    """How many windows Captum's Occlusion evaluates over ``shape``."""
    return int(np.prod([max(0, (n - min(w, n)) // s) + 1 for n in shape]))


def occlusion(
    module: torch.nn.Module, x: torch.Tensor, target: int, p: dict[str, Any], region: np.ndarray | None = None
) -> torch.Tensor:
    """Occlusion maps, by Captum's :class:`~captum.attr.Occlusion`, three ways.

    - ``strategy="full"``: every window over the volume (exactly Captum's call);
    - with ``region``: only the windows over the region's bounding box grown by one window
      (aligned to the stride lattice, so each window and its score drop are those of the
      full run); the map is 0 elsewhere;
    - ``strategy="coarse_to_fine"``: a first pass with windows and strides ``coarse_factor``
      times larger, then full-resolution windows only around the ``refine_fraction`` of
      voxels with the largest coarse ``|attribution|`` (grown by one window, one box per
      connected component). Outside the refined boxes the coarse map is kept, scaled by the
      least-squares factor that matches it to the fine map where both exist. When refining
      would cost more windows than a full run, the full run is done instead.

    If ``module`` has a ``total`` attribute (the engine's progress counter), it is set to
    the exact number of samples once the plan is known.
    """
    from scipy import ndimage

    w, s = int(p["window"]), int(p["stride"])
    strategy = p.get("strategy", "full")
    if strategy not in ("full", "coarse_to_fine"):
        raise ValueError(f"occlusion strategy must be 'full' or 'coarse_to_fine', got {strategy!r}")
    if w < 1 or s < 1:
        raise ValueError(f"occlusion window and stride must be at least 1 voxel, got {w} and {s}")
    if strategy == "coarse_to_fine" and (
        int(p["coarse_factor"]) < 2 or not 0 < float(p["refine_fraction"]) <= 1
    ):
        raise ValueError(
            "coarse_to_fine needs coarse_factor >= 2 and 0 < refine_fraction <= 1, got "
            f"{p['coarse_factor']} and {p['refine_fraction']}"
        )
    shape = tuple(int(n) for n in x.shape[2:])
    if region is not None:
        if not np.any(region):
            raise ValueError("the occlusion region is empty on the model grid")
        idx = np.argwhere(region)
        outer = _aligned_box(idx.min(0) - w, idx.max(0) + 1 + w, shape, w, s)
    else:
        outer = None
    span = shape if outer is None else tuple(b.stop - b.start for b in outer)
    out = torch.zeros_like(x)
    where = (slice(None), slice(None), *(outer or ()))
    if strategy == "full":
        if hasattr(module, "total"):
            module.total = 1 + occlusion_windows(span, w, s)
        out[where] = _occlude(module, x, target, outer, w, s, p)
        return out

    f = int(p["coarse_factor"])
    cw, cs = w * f, s * f
    if hasattr(module, "total"):  # coarse pass, and a guess for the fine one until it is planned
        module.total = 1 + occlusion_windows(span, cw, cs) + 1
    coarse = torch.zeros_like(x)
    coarse[where] = _occlude(module, x, target, outer, cw, cs, p)
    score = coarse[0].abs().sum(0).numpy()
    if region is not None:
        inside = np.zeros(shape, bool)
        inside[outer] = True
        score = np.where(inside, score, 0.0)
    level = np.quantile(score[score > 0], 1 - float(p["refine_fraction"])) if np.any(score > 0) else np.inf
    selected = ndimage.binary_dilation(score >= level, np.ones((3, 3, 3), bool), iterations=max(1, w // 2))
    labels, _ = ndimage.label(selected)
    boxes = [
        _aligned_box(np.array([b.start for b in sl]), np.array([b.stop for b in sl]), shape, w, s)
        for sl in ndimage.find_objects(labels)
        if sl is not None
    ]
    planned = sum(1 + occlusion_windows(tuple(b.stop - b.start for b in box), w, s) for box in boxes)
    if planned >= 1 + occlusion_windows(span, w, s):  # refining would cost more than one full run
        boxes = [outer or tuple(slice(0, n) for n in shape)]
        planned = 1 + occlusion_windows(span, w, s)
    if hasattr(module, "total"):
        module.total = getattr(module, "done", 0) + planned
    fine = torch.zeros_like(x)
    refined = torch.zeros(shape, dtype=torch.bool)
    for box in boxes:
        fine[(slice(None), slice(None), *box)] = _occlude(module, x, target, box, w, s, p)
        refined[box] = True
    c, fm = coarse[..., refined], fine[..., refined]
    denom = float((c * c).sum())
    scale = float((c * fm).sum()) / denom if denom > 0 else 1.0
    out = torch.where(refined, fine, coarse * scale)
    return out
