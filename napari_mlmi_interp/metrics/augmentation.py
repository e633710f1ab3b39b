"""Test-time augmentation: the small changes a scan could have had, and a segmenter's spread under them.

One generator of augmented copies (:func:`augmented_copies`) serves classifiers
(:func:`~napari_mlmi_interp.metrics.faithfulness.tta_scores`: the spread of the class score) and
segmenters (:func:`tta_segmentation`: the spread of one class's segmented volume in mL and of
its Dice against the segmentation of the unaugmented scan). Each copy is shifted by a few
voxels (edge voxels repeat, no wrap-around), its intensities scaled by ``1 +- intensity`` and
given Gaussian noise; no flips, since laterality can be the finding. A segmentation of a
shifted copy is shifted back before it is compared, so a segmenter that follows the anatomy
exactly has a Dice of 1 under a pure shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .classification import dice

__all__ = ["AugmentedCopy", "SegmentationSpread", "augmented_copies", "shift_back", "tta_segmentation"]


@dataclass(frozen=True)
class AugmentedCopy:
    """One augmented copy of the input: the tensor, and the shift (voxels, per spatial axis) it got."""

    tensor: Any
    shifts: tuple[int, ...]


def augmented_copies(
    x: Any,
    n: int,
    *,
    shift_voxels: int = 2,
    intensity: float = 0.05,
    noise: float = 0.02,
    seed: int = 0,
) -> list[AugmentedCopy]:
    """``n`` augmented copies of ``x`` (``(1, C, *spatial)``), reproducible from ``seed``.

    Parameters
    ----------
    shift_voxels : int
        Each copy moves by a whole number of voxels in ``[-shift_voxels, shift_voxels]`` along
        every spatial axis (edge voxels repeat).
    intensity : float
        Intensities are scaled by a factor drawn in ``[1 - intensity, 1 + intensity]``.
    noise : float
        Gaussian noise of SD ``noise`` times the input's SD is added.
    """
    import torch

    if n < 0 or shift_voxels < 0 or intensity < 0 or noise < 0:
        raise InputError(
            "n, shift_voxels, intensity and noise must be >= 0, "
            f"got {n}, {shift_voxels}, {intensity}, {noise}"
        )
    rng = np.random.default_rng(seed)
    sd = float(x.std())
    copies = []
    for _ in range(int(n)):
        y, shifts = x, []
        for axis in range(2, x.ndim):
            s = int(rng.integers(-shift_voxels, shift_voxels + 1))
            shifts.append(s)
            if s:
                idx = torch.clamp(torch.arange(x.shape[axis]) - s, 0, x.shape[axis] - 1)
                y = y.index_select(axis, idx)
        y = y * float(1 + rng.uniform(-intensity, intensity))
        g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
        y = y + torch.randn(y.shape, generator=g, dtype=y.dtype) * noise * sd
        copies.append(AugmentedCopy(y, tuple(shifts)))
    return copies


def shift_back(array: np.ndarray, shifts: tuple[int, ...]) -> np.ndarray:
    """``array`` (spatial axes only) moved back by ``shifts`` voxels (edge voxels repeat).

    Undoes the shift of :func:`augmented_copies` on anything computed on the shifted copy,
    exactly for every voxel at least ``|shift|`` from the edges.
    """
    out = np.asarray(array)
    for axis, s in enumerate(shifts):
        if s:
            idx = np.clip(np.arange(out.shape[axis]) + s, 0, out.shape[axis] - 1)
            out = np.take(out, idx, axis=axis)
    return out


@dataclass
class SegmentationSpread:
    """One class's segmentation under test-time augmentation (first entry: the scan itself).

    Attributes
    ----------
    volumes_ml : list of float
        Segmented volume of the class, in mL, per copy.
    dice : list of float
        Dice of each copy's segmentation (shifted back) with the scan's own.
    roi_probability : list of float
        Mean probability of the class over the ROI's voxels, per copy (empty without an ROI).
    """

    volumes_ml: list[float] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    roi_probability: list[float] = field(default_factory=list)

    def sd(self, values: list[float]) -> float | None:
        """SD over the augmented copies (the scan itself left out); None without copies."""
        return float(np.std(values[1:])) if len(values) > 1 else None


def _class_maps(logits: Any, class_index: int, slab: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """One sample's ``(C, *spatial)`` logits -> the class's mask and probability (spatial).

    Computed ``slab`` slices of the first spatial axis at a time: a softmax over 50 classes
    at 256³ would otherwise need another 3 GB.
    """
    import torch

    if logits.shape[0] == 1:  # one channel: sigmoid, present where the logit is > 0
        return (logits[0] > 0).numpy(), torch.sigmoid(logits[0]).numpy()
    mask = np.empty(tuple(logits.shape[1:]), dtype=bool)
    probability = np.empty(tuple(logits.shape[1:]), dtype=np.float32)
    for start in range(0, int(logits.shape[1]), slab):
        part = logits[:, start : start + slab]
        mask[start : start + slab] = (torch.argmax(part, dim=0) == class_index).numpy()
        probability[start : start + slab] = torch.softmax(part, dim=0)[class_index].numpy()
    return mask, probability


def tta_segmentation(
    logits: Callable[[Any], Any],
    x: Any,
    class_index: int,
    *,
    voxel_ml: float,
    roi: np.ndarray | None = None,
    n: int = 8,
    shift_voxels: int = 2,
    intensity: float = 0.05,
    noise: float = 0.02,
    seed: int = 0,
) -> SegmentationSpread:
    """A segmenter's class ``class_index`` on the input and ``n`` augmented copies.

    Parameters
    ----------
    logits : callable
        ``(1, C, *spatial)`` tensor -> ``(1, K, *spatial)`` logits; the class mask is the
        argmax (``K > 1``) or the logit > 0 (``K == 1``), as in a prediction.
    x : torch.Tensor
        ``(1, C, *spatial)`` model input.
    voxel_ml : float
        Volume of one voxel of the model grid, in mL.
    roi : numpy.ndarray, optional
        Boolean mask (spatial shape): the mean class probability inside it is recorded too.
    n, shift_voxels, intensity, noise, seed
        The augmentations, as in :func:`augmented_copies`.

    Copies run one at a time: a full segmenter's logits at 256³ are gigabytes per sample.
    """
    import torch

    copies = [AugmentedCopy(x, (0,) * (x.ndim - 2))]
    copies += augmented_copies(x, n, shift_voxels=shift_voxels, intensity=intensity, noise=noise, seed=seed)
    out, reference = SegmentationSpread(), None
    for copy in copies:
        with torch.no_grad():
            raw = logits(copy.tensor)
        mask, probability = _class_maps(raw[0].detach().float().cpu(), class_index)
        del raw
        out.volumes_ml.append(float(mask.sum()) * voxel_ml)  # the copy's own volume, before shifting back
        mask, probability = shift_back(mask, copy.shifts), shift_back(probability, copy.shifts)
        reference = mask if reference is None else reference
        out.dice.append(dice(mask, reference))
        if roi is not None:
            out.roi_probability.append(float(probability[roi].mean()))
    return out
