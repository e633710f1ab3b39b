"""Max pooling of the gradient methods' tuned copy, run on a channels-last view (see :mod:`.tuning`).

PyTorch's CPU max pooling of a contiguous (NCDHW) 3D tensor is an order of magnitude slower
than of the same tensor channels-last: DenseNet121's stem pooling (64 channels, 48³ -> 24³)
took 24 ms, against 2.4 ms channels-last plus 2.7 ms to reorder the input (MONAI ResNet's,
96³ -> 48³: 201 ms, against 33 + 63 ms). Both kernels scan each window in the same order and
keep the first largest value, so the maximum and its index are the same, ties included
(tested on ReLU outputs full of zeros and on a constant background); the index is a position
in each channel's volume whatever the layout, so the backward is PyTorch's own, given that
index. Output and indices are reordered back (the costly direction: 15 ms for a 48³ x 64
float tensor), so a forward and backward went 30 -> 14.5 ms at 48³ and 310 -> 250 ms at 96³.
On a whole Saliency at 96³ the gain is small: DenseNet121 0.420 -> 0.408 s by the median of 7
(0.405 -> 0.404 s by the minimum), ResNet18 2.051 -> 2.029 s by the median of 3 (2.042 -> 2.007 s).

Only the layout of the pooling changes: the layers around it see the tensors they saw.
(Making a whole stem channels-last had moved ResNet18's Saliency map by 1.6e-2, because
its convolution then rounded differently; this does not touch a convolution.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ChannelsLastMaxPool3d", "eligible"]


def eligible(m: Any) -> bool:
    """A plain ``nn.MaxPool3d`` that returns no indices."""
    return type(m) is nn.MaxPool3d and not m.return_indices


def _args(m: nn.MaxPool3d) -> tuple:
    def triple(v: Any) -> list[int]:
        return [int(a) for a in v] if isinstance(v, (tuple, list)) else [int(v)] * 3

    stride = m.stride if m.stride is not None else m.kernel_size
    return triple(m.kernel_size), triple(stride), triple(m.padding), triple(m.dilation), bool(m.ceil_mode)


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, args: tuple) -> Any:
        cl = x.contiguous(memory_format=torch.channels_last_3d)
        y, idx = torch.ops.aten.max_pool3d_with_indices(cl, *args)
        ctx.save_for_backward(x, idx.contiguous())
        ctx.args = args
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool3d_with_indices_backward(g.contiguous(), x, *ctx.args, idx), None


class ChannelsLastMaxPool3d(nn.Module):
    """An :func:`eligible` max pooling run channels-last on a contiguous float32 CPU input that
    needs a gradient; anything else runs as ``nn.MaxPool3d``."""

    def __init__(self, pool: nn.MaxPool3d) -> None:
        super().__init__()
        self.pool, self.args = pool, _args(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.requires_grad
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.ndim == 5
            and x.is_contiguous()
        ):
            return _Pool.apply(x, self.args)
        return self.pool(x)
