"""The PyTorch layer behind a Keras ``Conv3D`` (imported only when a TF.js model is built)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["KerasConv3d", "same_padding"]


def same_padding(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's ``same`` padding along one axis: ``(before, after)`` voxels for input size ``n``.

    The output has ``ceil(n / s)`` voxels; the total padding is what that needs,
    ``max((out - 1) * s + (k - 1) * d + 1 - n, 0)``, the smaller half before (TensorFlow's rule,
    which differs from a symmetric ``padding=`` for even kernels and for strides > 1).
    """
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


class KerasConv3d(nn.Conv3d):
    """``nn.Conv3d`` with Keras' ``same``/``valid`` padding and the layer's own activation.

    When the ``same`` padding is symmetric along every axis for any input size (stride 1, odd
    effective kernel), it is left to the convolution itself (no padded copy of the input);
    otherwise the input is zero-padded explicitly, per forward, for its size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int],
        stride: tuple[int, int, int],
        dilation: tuple[int, int, int],
        groups: int,
        bias: bool,
        keras_padding: str,
        activation: nn.Module,
    ) -> None:
        symmetric = keras_padding == "same" and all(
            s == 1 and (k - 1) * d % 2 == 0 for k, s, d in zip(kernel_size, stride, dilation, strict=True)
        )
        padding = (
            tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation, strict=True)) if symmetric else 0
        )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.keras_padding = keras_padding
        self.explicit_padding = keras_padding == "same" and not symmetric
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_padding:
            pads: list[int] = []
            # F.pad takes (before, after) pairs from the last axis backwards
            for axis in (4, 3, 2):
                i = axis - 2
                pads.extend(
                    same_padding(x.shape[axis], self.kernel_size[i], self.stride[i], self.dilation[i])
                )
            x = F.pad(x, pads)
        return self.activation(super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keras_padding={self.keras_padding!r}"
