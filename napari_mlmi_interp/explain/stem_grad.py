"""The input gradient of a stem convolution, as depthwise correlations (see :mod:`.tuning`)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["StemConv3d", "stem_input_grad"]


def stem_input_grad(g: Any, weight: Any, in_shape: tuple[int, ...], stride: tuple, padding: tuple) -> Any:
    """The input gradient of ``conv3d(x, weight, stride=stride, padding=padding)`` for output gradient ``g``.

    Per stride phase ``r`` of the input (``i = s q + r`` along each axis) only the kernel taps
    ``j ≡ r + p (mod s)`` reach it: the phase's gradient is the correlation of ``g`` with that
    sub-kernel flipped, offset by ``(r + p - j0) / s``. Each is run as a depthwise convolution
    on a channels-last tensor (fast in oneDNN) and summed over the output channels.
    """
    n_out, k = tuple(g.shape[2:]), tuple(weight.shape[2:])
    gx = g.new_zeros((g.shape[0], weight.shape[1], *in_shape))
    gc = g.contiguous(memory_format=torch.channels_last_3d)
    for phase in itertools.product(*(range(s) for s in stride)):
        j0 = [(r + p) % s for r, p, s in zip(phase, padding, stride, strict=True)]
        m = [len(range(a, kk, s)) for a, kk, s in zip(j0, k, stride, strict=True)]
        q = [len(range(r, n, s)) for r, n, s in zip(phase, in_shape, stride, strict=True)]
        if min(m) == 0 or min(q) == 0:
            continue  # no tap reaches this phase: its gradient is zero
        lo = [mm - 1 - (r + p - a) // s for mm, r, p, a, s in zip(m, phase, padding, j0, stride, strict=True)]
        hi = [qq + mm - 1 - no - low for qq, mm, no, low in zip(q, m, n_out, lo, strict=True)]
        if lo == hi and min(lo) >= 0:
            gp, pad = gc, tuple(lo)
        else:  # asymmetric: pad (or crop, where negative) first
            gp, pad = F.pad(gc, [v for a in (2, 1, 0) for v in (lo[a], hi[a])]), 0
        sub = weight[:, :, j0[0] :: stride[0], j0[1] :: stride[1], j0[2] :: stride[2]].flip(2, 3, 4)
        where = tuple(slice(r, None, s) for r, s in zip(phase, stride, strict=True))
        for i in range(weight.shape[1]):
            w_i = sub[:, i : i + 1].contiguous(memory_format=torch.channels_last_3d)
            out = F.conv3d(gp, w_i, padding=pad, groups=weight.shape[0]).sum(1)
            gx[(slice(None), i, *where)] = out[:, : q[0], : q[1], : q[2]]
    return gx


class _StemConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: Any, stride: tuple, padding: tuple
    ) -> Any:
        ctx.save_for_backward(weight)
        ctx.geometry = (tuple(x.shape[2:]), stride, padding)
        # the output keeps PyTorch's layout: made channels-last, the layers after the stem ran
        # faster (ResNet18's max pooling 5x) but the max pooling then picked other voxels among
        # (near-)equal values than the model as given does, which moved ResNet18's Saliency map
        # at 96³ by 1.6e-2 of its largest value: not the same map
        return F.conv3d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        (weight,) = ctx.saved_tensors
        in_shape, stride, padding = ctx.geometry
        return stem_input_grad(g, weight, in_shape, stride, padding), None, None, None, None


class StemConv3d(torch.nn.Module):
    """A frozen 3D convolution (dilation 1, one group) whose input gradient is :func:`stem_input_grad`."""

    def __init__(self, conv: torch.nn.Conv3d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride = tuple(int(v) for v in conv.stride)
        self.padding = tuple(int(v) for v in conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return _StemConv.apply(x, self.weight, self.bias, self.stride, self.padding)
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding)
