"""Frozen stride-1 3D convolutions whose input gradient oneDNN computes (see :mod:`.tuning`).

PyTorch's CPU dispatcher sends a 3D convolution of a single sample to its reference kernel
("slow_conv3d") when ``channels x depth x height`` of the input is at most 20480, e.g. DenseNet121's
128 -> 32 channel 3³ convolutions on a 12³ tensor, and their input gradient too. oneDNN runs the
input gradient 7x faster (7.6 -> 1.0 ms on 2 threads): the input gradient of a stride-1
convolution is the convolution of the output gradient with the kernel flipped and its channel
axes swapped (padding ``dilation (k - 1) - padding``), which :class:`OneDnnConv3d` hands to
oneDNN directly. No weight gradient is computed: the copy's parameters are frozen.

The forward stays PyTorch's own (``F.conv3d``): oneDNN's forward was 5x faster as well, but it
rounds differently, and on DenseNet121 (seeded weights, 96³) a few ReLUs then switched the other
way, moving the Saliency map by 3.6e-3 of its largest value. With the forward as the model runs it
the map moves by 6.5e-7.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["OneDnnConv3d", "eligible"]


def eligible(m: Any) -> bool:
    """A plain ``nn.Conv3d`` with stride 1 and one group whose input gradient is a convolution."""
    if type(m) is not torch.nn.Conv3d or not torch.backends.mkldnn.is_available():
        return False
    if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return False
    if tuple(m.stride) != (1, 1, 1):
        return False
    k, d, p = m.kernel_size, m.dilation, m.padding
    return all(dd * (kk - 1) - pp >= 0 for kk, dd, pp in zip(k, d, p, strict=True))


def _onednn(x: torch.Tensor, w: torch.Tensor, padding: list, dilation: list) -> torch.Tensor:
    return torch.ops.aten.mkldnn_convolution(x, w, None, padding, [1, 1, 1], dilation, 1)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: OneDnnConv3d) -> Any:
        ctx.module = module
        return F.conv3d(x, module.weight, module.bias, 1, module.padding, module.dilation)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        m = ctx.module
        return _onednn(g.contiguous(), m.flipped, m.grad_padding, m.dilation), None


class OneDnnConv3d(torch.nn.Module):
    """A frozen :func:`eligible` convolution whose input gradient oneDNN computes.

    The forward is ``F.conv3d``; on anything but a float32 CPU tensor so is the backward.
    """

    def __init__(self, conv: torch.nn.Conv3d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.padding = [int(v) for v in conv.padding]
        self.dilation = [int(v) for v in conv.dilation]
        k, d, p = conv.kernel_size, self.dilation, self.padding
        self.grad_padding = [dd * (kk - 1) - pp for kk, dd, pp in zip(k, d, p, strict=True)]
        # the kernel of the input gradient: flipped in space, input and output channels swapped
        self.register_buffer("flipped", conv.weight.detach().flip(2, 3, 4).transpose(0, 1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cpu = x.device.type == "cpu" and x.dtype == torch.float32 and not self.weight.requires_grad
        if x.requires_grad and cpu:
            return _Conv.apply(x, self)
        return F.conv3d(x, self.weight, self.bias, 1, self.padding, self.dilation)
