"""The input gradient of a stem convolution, as depthwise correlations (see :mod:`.tuning`)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["StemConv3d", "stem_input_grad"]


def stem_input_grad(g: Any, weight: Any, in_shape: tuple[int, ...], stride: tuple, padding: tuple) -> Any:
    """The input gradient of ``conv3d(x, weight, stride=stride, padding=padding)`` for output gradient ``g``.

    A strided convolution's is one convolution of ``g`` with every stride phase's flipped
    sub-kernel as an output channel, the phases then interleaved (:func:`_subpixel_input_grad`);
    a stride-1 one, or one whose padding exceeds its kernel, is depthwise correlations
    (:func:`_phase_input_grad`). Measured on 2 threads, DenseNet121's stem (7³, stride 2, 1 -> 64
    channels): 47 ms instead of 68 ms at 96³, 129 ms instead of 354 ms at 128³; MONAI ResNet's
    (stride 1) 0.35 s by phases, 2.0 s as one convolution (a single output channel).
    """
    if any(s > 1 for s in stride) and (geometry := _subpixel_geometry(weight, g, in_shape, stride, padding)):
        return _subpixel_input_grad(g, weight, in_shape, stride, geometry)
    return _phase_input_grad(g, weight, in_shape, stride, padding)


def _subpixel_geometry(weight: Any, g: Any, in_shape: tuple, stride: tuple, padding: tuple) -> list | None:
    """Per axis: each phase's (first tap, taps, offset), the shared kernel's start and length,
    the phase length and the left and right padding; None where the left padding is negative."""
    axes = []
    for s, k, p, n, n_out in zip(stride, weight.shape[2:], padding, in_shape, g.shape[2:], strict=True):
        # input i = s q + r takes taps j = j0 + s t from outputs q + c - t
        phases = [((r + p) % s, len(range((r + p) % s, k, s)), (r + p - (r + p) % s) // s) for r in range(s)]
        lo = min(c - m + 1 for _, m, c in phases if m > 0)
        hi = max(c for _, m, c in phases if m > 0)
        q = -(-n // s)
        if lo > 0:
            return None
        axes.append((phases, lo, hi - lo + 1, q, -lo, q - 1 + hi - (n_out - 1)))
    return axes


def _subpixel_input_grad(g: Any, weight: Any, in_shape: tuple, stride: tuple, axes: list) -> Any:
    """The input gradient as one convolution: output channel ``(i, phase)`` holds input channel
    ``i``'s gradient at that stride phase (the sub-pixel form of a transposed convolution)."""
    n_phases = math.prod(stride)
    cout, cin = weight.shape[:2]
    kernel = weight.new_zeros((cin * n_phases, cout, *(a[2] for a in axes)))
    for index, phase in enumerate(itertools.product(*(range(s) for s in stride))):
        taps = [axes[a][0][r] for a, r in enumerate(phase)]
        if min(m for _, m, _ in taps) == 0:
            continue  # no tap reaches this phase: its gradient is zero
        at = [slice(c - m + 1 - a[1], c - a[1] + 1) for (_, m, c), a in zip(taps, axes, strict=True)]
        of = [slice(j0, None, s) for (j0, _, _), s in zip(taps, stride, strict=True)]
        sub = weight[(..., *of)].flip(2, 3, 4).transpose(0, 1)
        kernel[(slice(index, None, n_phases), slice(None), *at)] = sub
    pad = [max(a[4], a[5], 0) for a in axes]
    out = F.conv3d(
        g.contiguous(memory_format=torch.channels_last_3d),
        kernel.contiguous(memory_format=torch.channels_last_3d),
        padding=pad,
    )
    q = [a[3] for a in axes]
    out = out[(..., *(slice(p - a[4], p - a[4] + qq) for p, a, qq in zip(pad, axes, q, strict=True)))]
    n = g.shape[0]
    out = out.reshape(n, cin, *stride, *q).permute(0, 1, 5, 2, 6, 3, 7, 4)
    out = out.reshape(n, cin, *(qq * s for qq, s in zip(q, stride, strict=True)))
    return out[(..., *(slice(0, v) for v in in_shape))].contiguous()


def _phase_input_grad(g: Any, weight: Any, in_shape: tuple, stride: tuple, padding: tuple) -> Any:
    """The input gradient by stride phases, each as depthwise correlations.

    Per stride phase ``r`` of the input (``i = s q + r`` along each axis) only the kernel taps
    ``j ≡ r + p (mod s)`` reach it: the phase's gradient is the correlation of ``g`` with that
    sub-kernel flipped, offset by ``(r + p - j0) / s``. Each is run as a depthwise convolution
    on a channels-last tensor (fast in oneDNN) and summed over the output channels.

    A batch is run one sample at a time: the padded copies and depthwise outputs of one sample
    stay in cache, of several they do not (DenseNet121's stem at 96³, a batch of 4: 167 ms a
    sample at once, 61 ms one at a time).
    """
    if g.shape[0] > 1:
        return torch.cat([_phase_input_grad(gi, weight, in_shape, stride, padding) for gi in g.split(1)])
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
