"""Frozen batch norm + ReLU + convolution runs whose backward skips the batch norm (see :mod:`.tuning`).

In eval mode a batch norm is a per-channel affine map, ``y = s x + b`` with
``s = weight / sqrt(running_var + eps)``, so its input gradient is the output gradient times
``s``: a pass over the whole tensor that can be folded into the convolution beside it. For
``relu(bn(x))`` feeding a stride-1 convolution (DenseNet's pre-activation order) the input
gradient is ``mask * s * convT(g)``, and ``s * convT_W(g)`` is ``convT_{W s}(g)``: the
transposed convolution with the kernel's input channels scaled by ``s``; ``mask`` is where
the ReLU passed (its output > 0, as autograd's ``threshold_backward`` has it).

The forward runs the three modules as the model does, bit for bit; the ReLU's output is kept
for the backward as autograd keeps it, the batch norm's input is not. (Keeping a boolean mask
instead, 1 byte a value, was slower: building it and ``masked_fill_`` cost 39 ms a Saliency
against ``threshold_backward``'s 19 ms.) DenseNet121's Saliency at 96³ on 2 threads, minimum
and median of 7 in one process: 0.450 / 0.482 s -> 0.423 / 0.452 s (119 of its 121 batch
norms fused; the other two follow the stem and precede the head), at 128³ 1.004 / 1.022 s ->
0.891 / 0.899 s; the map stays within 7e-7 of Captum's largest value, as before.

The post-activation order (convolution, batch norm, ReLU: the demo zoo, ``convT_{W s}(mask *
g)`` with the output channels scaled) was tried the same way and not kept: a block's forward
and backward at 64³ took 101 -> 99 ms (16 -> 32 channels) and 300 -> 301 ms (32 -> 48), its
batch norm's backward a small share beside the convolution's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .onednn_conv import OneDnnConv3d, _onednn

__all__ = ["BnReluConv3d", "fuse_sequentials"]


def _frozen_bn(m: Any) -> bool:
    """An eval-mode 3D batch norm with running statistics (a per-channel affine map)."""
    return (
        type(m) is nn.BatchNorm3d
        and not m.training
        and m.track_running_stats
        and m.running_var is not None
        and m.running_mean is not None
    )


def _scale(bn: nn.BatchNorm3d) -> torch.Tensor:
    """The batch norm's per-channel factor ``weight / sqrt(running_var + eps)``."""
    inv = (bn.running_var.detach().double() + bn.eps).rsqrt()
    if bn.weight is not None:
        inv = inv * bn.weight.detach().double()
    return inv.float()


def _fast(x: torch.Tensor, conv: OneDnnConv3d) -> bool:
    return (
        x.requires_grad
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not conv.weight.requires_grad
    )


class _PreAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mod: BnReluConv3d) -> Any:
        y = mod.relu(mod.bn(x))
        ctx.y, ctx.mod = y, mod
        c = mod.conv
        return F.conv3d(y, c.weight, c.bias, 1, c.padding, c.dilation)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        m = ctx.mod
        gi = _onednn(g.contiguous(), m.flipped, m.conv.grad_padding, m.conv.dilation)
        return torch.ops.aten.threshold_backward(gi, ctx.y, 0), None


class BnReluConv3d(nn.Module):
    """``conv(relu(bn(x)))`` with the batch norm's backward folded into the convolution's."""

    def __init__(self, bn: nn.BatchNorm3d, relu: nn.ReLU, conv: OneDnnConv3d) -> None:
        super().__init__()
        self.bn, self.relu, self.conv = bn, relu, conv
        # the batch norm's channels are the convolution's input channels: axis 0 of the flipped kernel
        self.register_buffer("flipped", conv.flipped * _scale(bn).view(-1, 1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast(x, self.conv):
            return _PreAct.apply(x, self)
        return self.conv(self.relu(self.bn(x)))


def _fused(a: Any, b: Any, c: Any) -> nn.Module | None:
    """The fused module for three consecutive children, or None (also where one has hooks)."""
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in (a, b, c)):
        return None
    if _frozen_bn(a) and type(b) is nn.ReLU and isinstance(c, OneDnnConv3d):
        return BnReluConv3d(a, b, c)
    return None


def fuse_sequentials(module: nn.Module) -> int:
    """Fuse, in place, every run of batch norm, ReLU and stride-1 convolution that is
    consecutive children of an ``nn.Sequential`` whose forward is Sequential's own (the one
    container whose dataflow is its order); returns how many runs were fused. The fused
    child is named after the first of the three (``norm1`` for ``norm1, relu1, conv1``)."""
    fused = 0
    chains = [m for m in module.modules() if isinstance(m, nn.Sequential)]
    for seq in [m for m in chains if type(m).forward is nn.Sequential.forward]:
        items, kept, i = list(seq._modules.items()), [], 0
        while i < len(items):
            new = _fused(*(m for _, m in items[i : i + 3])) if i + 3 <= len(items) else None
            if new is None:
                kept.append(items[i])
                i += 1
            else:
                kept.append((items[i][0], new))
                fused += 1
                i += 3
        if len(kept) != len(items):
            seq._modules.clear()
            seq._modules.update(kept)
    return fused
