"""Model transparency and actionability: is the map faithful to the model, and does acting on it matter?

Everything here works on the *model grid* (the tensor the model sees, ``(1, C, *spatial)``)
with a map of the same spatial shape, and a ``forward`` callable that returns one score per
sample (e.g. the probability of the target class). Batches are bounded by ``batch_size``.

- **Deletion / insertion** (Petsiuk et al., BMVC 2018, "RISE"): voxels are ranked by the
  map (largest first). Deletion replaces the top ``f`` fraction by the baseline, for ``f``
  from 0 to 1 in ``steps`` steps, and records the score; insertion starts from the baseline
  and restores the top ``f``. Area under each curve by the trapezoid rule over ``f`` in
  [0, 1]: a faithful map has a *low* deletion AUC and a *high* insertion AUC.
- **Cascading model-parameter randomisation** (Adebayo et al., NeurIPS 2018): the model's
  layers are re-drawn at random from the top (output) down, cumulatively; after each stage
  the map is recomputed and compared with the original by Spearman rank correlation. A map
  that stays the same while the model is destroyed explains the image, not the model.
- **Infidelity** (Yeh et al., NeurIPS 2019), computed by :func:`captum.metrics.infidelity`:
  ``E[(I . phi - (f(x) - f(x - I)))^2]`` over random perturbations ``I``; with
  ``normalize`` the map is first scaled by the best factor, so its units do not matter.
- **Region removal** (actionability): the score before and after the attributed region is
  replaced by the baseline.
- **Test-time augmentation**: the score's mean and spread under small shifts, intensity
  scaling and noise; a wide spread is a referral cue.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "RandomisationResult",
    "baseline_like",
    "curve_auc",
    "deletion_curve",
    "infidelity",
    "insertion_curve",
    "map_agreement",
    "randomisation_test",
    "region_removal",
    "tta_scores",
]

Forward = Callable[[Any], Any]  # (N, C, *spatial) tensor -> (N,) scores


def baseline_like(x: Any, baseline: float | str | Any, *, blur_sigma: float | Sequence[float] = 3.0) -> Any:
    """The baseline tensor for input ``x`` (``(N, C, *spatial)``).

    Parameters
    ----------
    baseline : float, tensor, or 'blur' | 'mean' | 'min' | 'zero'
        ``'blur'``: a Gaussian-blurred copy of ``x`` (per channel, spatial axes only);
        ``'mean'`` / ``'min'``: ``x``'s mean or minimum everywhere; ``'zero'``: zeros (for a
        z-scored input that is its mean); a number: that constant; a tensor: itself.
    blur_sigma : float or sequence of float
        Gaussian SD of ``'blur'`` in voxels (one per spatial axis, or one for all).
    """
    import torch

    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x)
        if baseline == "mean":
            return torch.full_like(x, float(x.mean()))
        if baseline == "min":
            return torch.full_like(x, float(x.min()))
        if baseline == "blur":
            from scipy.ndimage import gaussian_filter

            arr = x.detach().cpu().numpy()
            spatial = arr.ndim - 2
            sigma = np.broadcast_to(np.asarray(blur_sigma, dtype=np.float64), (spatial,))
            if np.any(sigma < 0):
                raise InputError(f"blur_sigma must be >= 0 voxels, got {blur_sigma}")
            full = (0.0, 0.0, *(float(v) for v in sigma))
            return torch.from_numpy(gaussian_filter(arr, sigma=full).astype(arr.dtype))
        raise InputError(
            f"baseline must be a number, a tensor, 'zero', 'mean', 'min' or 'blur', got {baseline!r}"
        )
    if isinstance(baseline, int | float):
        return torch.full_like(x, float(baseline))
    b = torch.as_tensor(baseline, dtype=x.dtype)
    return b.expand_as(x) if b.shape != x.shape else b


def _check_map(x: Any, attribution: np.ndarray) -> np.ndarray:
    a = np.asarray(attribution, dtype=np.float64)
    if tuple(a.shape) != tuple(x.shape[2:]):
        raise InputError(f"the map {a.shape} must have the input's spatial shape {tuple(x.shape[2:])}")
    return a


def _scores(forward: Forward, batches: Any) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = forward(batches)
    return np.asarray(out.detach().cpu().numpy(), dtype=np.float64).reshape(-1)


def _curve(
    forward: Forward,
    x: Any,
    attribution: np.ndarray,
    *,
    insert: bool,
    steps: int,
    baseline: Any,
    batch_size: int,
    blur_sigma: float | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    a = _check_map(x, attribution)
    base = baseline_like(x, baseline, blur_sigma=blur_sigma)
    order = torch.from_numpy(np.argsort(-a.ravel(), kind="stable"))
    n = a.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * n).astype(int)
    scores = []
    for start in range(0, len(counts), max(1, batch_size)):
        chunk = counts[start : start + batch_size]
        masks = torch.zeros((len(chunk), n), dtype=torch.bool)
        for i, c in enumerate(chunk):
            masks[i, order[:c]] = True
        masks = masks.reshape(len(chunk), 1, *a.shape)
        if insert:
            batch = torch.where(masks, x, base)
        else:
            batch = torch.where(masks, base, x)
        scores.append(_scores(forward, batch))
    return fractions, np.concatenate(scores)


def deletion_curve(
    forward: Forward,
    x: Any,
    attribution: np.ndarray,
    *,
    steps: int = 20,
    baseline: float | str | Any = "blur",
    batch_size: int = 4,
    blur_sigma: float | Sequence[float] = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Score as the top ``f`` fraction of voxels is replaced by ``baseline`` (f = 0 ... 1).

    Parameters
    ----------
    forward : callable
        ``(N, C, *spatial)`` tensor -> ``(N,)`` scores.
    x : torch.Tensor
        ``(1, C, *spatial)`` model input.
    attribution : numpy.ndarray
        Map with the input's spatial shape (model axes); channels share it.
    baseline : float, tensor, or 'blur' | 'mean' | 'min' | 'zero'
        What removed voxels become (see :func:`baseline_like`). The default, a blurred copy,
        keeps the image near the data the model was trained on; a constant fill makes holes
        no training scan has, and the score then measures the model's reaction to them.
    blur_sigma : float or sequence of float
        Gaussian SD of the ``'blur'`` baseline in voxels (per spatial axis, or one for all).

    Returns
    -------
    fractions, scores : numpy.ndarray
        ``steps + 1`` values each.

    Notes
    -----
    The curve need not fall monotonically: a partly deleted scan is an image the model never
    saw, and its score can rise again at some fractions. The area summarises the whole curve.
    """
    return _curve(
        forward,
        x,
        attribution,
        insert=False,
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def insertion_curve(
    forward: Forward,
    x: Any,
    attribution: np.ndarray,
    *,
    steps: int = 20,
    baseline: float | str | Any = "blur",
    batch_size: int = 4,
    blur_sigma: float | Sequence[float] = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Score as the top ``f`` fraction of voxels is restored into ``baseline`` (f = 0 ... 1).

    Same parameters and the same default baseline as :func:`deletion_curve`.
    """
    return _curve(
        forward,
        x,
        attribution,
        insert=True,
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def curve_auc(fractions: Sequence[float], scores: Sequence[float]) -> float:
    """Area under a curve over fractions in [0, 1] (trapezoid rule)."""
    f = np.asarray(fractions, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2.0))


@dataclass
class RandomisationResult:
    """Cascading randomisation: one rank correlation per stage (top layers first).

    ``stages[i]`` lists the layers randomised *at* stage ``i`` (all earlier stages stay
    randomised); ``correlations[i]`` is the Spearman correlation of the map after stage
    ``i`` with the original map.
    """

    stages: list[list[str]]
    correlations: list[float]
    absolute: bool = True
    maps: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def final(self) -> float:
        """Correlation with every layer randomised."""
        return self.correlations[-1] if self.correlations else float("nan")


def map_agreement(approx: np.ndarray, exact: np.ndarray, percent: float = 1.0) -> dict[str, float]:
    """How far an approximate map is from the exact one on the same grid.

    Returns
    -------
    dict
        ``spearman``: Spearman's ρ over all voxels; ``dice_top``: the Dice coefficient of the two
        maps' top ``percent`` % of voxels (:func:`.regions.topk_mask`, the top region every other
        figure uses); ``percent``.

    Raises
    ------
    InputError
        The maps differ in shape.
    """
    from .classification import dice
    from .regions import topk_mask

    a, b = np.asarray(approx, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"the maps differ in shape: {a.shape} and {b.shape}")
    return {
        "spearman": _spearman(a, b),
        "dice_top": dice(topk_mask(a, percent), topk_mask(b, percent)),
        "percent": float(percent),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant map carries no ranking: nothing of the original is left
    return float(spearmanr(a, b).statistic)


def parametrised_layers(module: Any) -> list[str]:
    """Names of the submodules that own parameters, in registration (input-to-output) order."""
    return [
        name for name, m in module.named_modules() if name and any(True for _ in m.parameters(recurse=False))
    ]


def randomisation_test(
    module: Any,
    attribute: Callable[[Any], np.ndarray],
    *,
    max_stages: int = 6,
    absolute: bool = True,
    seed: int = 0,
    keep_maps: bool = False,
    original: np.ndarray | None = None,
) -> RandomisationResult:
    """Cascading model-parameter randomisation from the top layer down.

    Parameters
    ----------
    module : torch.nn.Module
        The model; it is not modified (a copy is randomised).
    attribute : callable
        ``attribute(module) -> map``: the explanation method under test, run on a model.
    max_stages : int
        Layers are grouped into at most this many consecutive stages (a 120-layer DenseNet
        needs no 120 recomputations to show the trend).
    absolute : bool
        Compare ``|map|`` (Adebayo et al.'s main figure) or signed maps.
    original : numpy.ndarray, optional
        The map of the untouched model, when already computed.

    Each randomised parameter is re-drawn from a normal distribution with the original
    tensor's mean and standard deviation (so activations keep their scale and the map does
    not vanish to a constant); buffers (batch-norm statistics) are kept.
    """
    import torch

    layers = parametrised_layers(module)
    if not layers:
        raise InputError("the model has no layer with parameters to randomise")
    top_first = layers[::-1]
    n_stages = max(1, min(max_stages, len(top_first)))
    bounds = np.linspace(0, len(top_first), n_stages + 1).round().astype(int)
    stages = [top_first[bounds[i] : bounds[i + 1]] for i in range(n_stages)]
    base = np.asarray(original if original is not None else attribute(module), dtype=np.float64)
    ref = np.abs(base) if absolute else base
    generator = torch.Generator().manual_seed(seed)
    randomised = copy.deepcopy(module)
    randomised.eval()
    named = dict(randomised.named_modules())
    correlations, maps = [], []
    for stage in stages:
        with torch.no_grad():
            for name in stage:
                for p in named[name].parameters(recurse=False):
                    mean = float(p.mean()) if p.numel() > 1 else 0.0
                    std = float(p.std()) if p.numel() > 1 else 1.0
                    std = std if std > 0 else 1.0
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std + mean)
        m = np.asarray(attribute(randomised), dtype=np.float64)
        correlations.append(_spearman(ref, np.abs(m) if absolute else m))
        if keep_maps:
            maps.append(m.astype(np.float32))
    return RandomisationResult(stages=stages, correlations=correlations, absolute=absolute, maps=maps)


def infidelity(
    forward: Forward,
    x: Any,
    attribution: np.ndarray,
    *,
    perturbation: str = "subset",
    n_perturb: int = 16,
    noise_std: float = 0.1,
    subset_fraction: float = 0.1,
    block: int = 4,
    baseline: float | str | Any = "zero",
    normalize: bool = True,
    batch_size: int = 4,
    seed: int = 0,
) -> float:
    """Explanation infidelity by :func:`captum.metrics.infidelity` (lower is more faithful).

    Parameters
    ----------
    perturbation : {'subset', 'noise'}
        ``'subset'`` (for maps that include the input, e.g. IG, Grad-CAM, occlusion):
        random blocks of ``block``\\ :sup:`3` voxels, each with probability
        ``subset_fraction``, are replaced by the baseline, and ``I`` is that binary mask
        (Captum's perturbation for "global" attributions). ``'noise'`` (for local maps such
        as saliency): ``I`` is Gaussian noise of SD ``noise_std`` times the input's SD.
    normalize : bool
        Scale the map by the least-squares factor first (Captum's ``normalize``).
    """
    import torch
    from captum.metrics import infidelity as captum_infidelity

    a = _check_map(x, attribution)
    channels = int(x.shape[1])
    attr = torch.from_numpy((a / channels).astype(np.float32))[None, None].expand_as(x).contiguous()
    generator = torch.Generator().manual_seed(seed)
    base = baseline_like(x, baseline)
    spatial = tuple(x.shape[2:])

    def perturb(inputs: Any) -> tuple[Any, Any]:
        n = inputs.shape[0]
        if perturbation == "noise":
            scale = noise_std * float(x.std())
            noise = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype) * scale
            return noise, inputs - noise
        if perturbation != "subset":
            raise InputError(f"perturbation must be 'subset' or 'noise', not {perturbation!r}")
        coarse = [max(1, -(-s // block)) for s in spatial]
        keep = torch.rand((n, 1, *coarse), generator=generator) < subset_fraction
        for axis, s in enumerate(spatial):
            keep = keep.repeat_interleave(block, dim=2 + axis).narrow(2 + axis, 0, s)
        mask = keep.to(inputs.dtype).expand_as(inputs)
        # Captum's convention for "global" maps (those that include the input, like IG):
        # the perturbation is the binary selection, so I . phi is the map's sum over the
        # removed voxels, and the perturbed input has them at the baseline
        return mask, inputs - mask * (inputs - base[:1])

    with torch.no_grad():
        value = captum_infidelity(
            forward,
            perturb,
            x,
            attr,
            n_perturb_samples=int(n_perturb),
            max_examples_per_batch=max(1, int(batch_size)),
            normalize=normalize,
        )
    return float(value.reshape(-1)[0])


def region_removal(
    forward: Forward,
    x: Any,
    region: np.ndarray,
    *,
    baseline: float | str | Any = "blur",
    blur_sigma: float | Sequence[float] = 3.0,
) -> tuple[float, float]:
    """Scores before and after the voxels of ``region`` (model grid) are set to ``baseline``.

    ``baseline`` and ``blur_sigma`` (voxels) as in :func:`deletion_curve`.
    """
    import torch

    m = np.asarray(region, dtype=bool)
    if tuple(m.shape) != tuple(x.shape[2:]):
        raise InputError(f"the region {m.shape} must have the input's spatial shape {tuple(x.shape[2:])}")
    base = baseline_like(x, baseline, blur_sigma=blur_sigma)
    mask = torch.from_numpy(m)[None, None]
    batch = torch.cat([x, torch.where(mask, base, x)])
    before, after = _scores(forward, batch)
    return float(before), float(after)


def tta_scores(
    forward: Forward,
    x: Any,
    *,
    n: int = 8,
    shift_voxels: int = 2,
    intensity: float = 0.05,
    noise: float = 0.02,
    batch_size: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Scores of the input and ``n`` augmented copies (first score: the input itself).

    Each copy is shifted by up to ``shift_voxels`` voxels along every spatial axis (edge
    voxels repeat, no wrap-around), its intensities scaled by ``1 +- intensity`` and given
    Gaussian noise of ``noise`` x the input's SD. No flips: laterality can be the finding.
    The copies are :func:`~napari_mlmi_interp.metrics.augmentation.augmented_copies`, the same
    a segmenter's spread is measured on.
    """
    import torch

    from .augmentation import augmented_copies

    copies = [x] + [
        c.tensor
        for c in augmented_copies(
            x, n, shift_voxels=shift_voxels, intensity=intensity, noise=noise, seed=seed
        )
    ]
    out = [_scores(forward, torch.cat(copies[i : i + batch_size])) for i in range(0, len(copies), batch_size)]
    return np.concatenate(out)
