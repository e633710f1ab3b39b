"""Exact incremental occlusion: recompute only what a window changes, layer by layer.

Occluding a window changes a layer's activations only inside the window's receptive field at
that layer (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for
Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019). The model is traced with
``torch.fx``; the unoccluded activations of every node are computed once; then, for a batch of
windows, each node is evaluated on one of three states:

- **same**: the node does not depend on the input (weights, shapes), or on nothing that
  changed: its cached value;
- **patch**: a box of the node's output per window (all boxes of one node have one size, so
  a batch is one tensor), the rest being the cached value. Point-wise layers (activations,
  batch/instance norm with running statistics in eval mode, dropout in eval mode, additions,
  products, channel concatenations) map a patch to a patch; convolutions and max/average
  pooling compute the output box that can change from the input box (``ceil((a + p -
  d(k-1)) / s)`` to ``floor((b - 1 + p) / s)``) on the input region it needs, gathered from
  the cached activations with the patch pasted in and the layer's own zero (or -inf) padding;
- **full**: anything else (a global pooling, a flatten, a norm with instance statistics, an
  operation not listed), or a box that covers the whole tensor: the batch's full tensors
  (cached value with the patch pasted in), and the node runs as in the model.

Every value computed is therefore the value the model computes on the occluded input: the
map equals Captum's :class:`~captum.attr.Occlusion` (tested per architecture to 1e-4 of the
map's range). Only the order of floating-point sums inside a convolution may differ.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IncrementalOcclusion", "NotIncremental", "window_starts"]


class NotIncremental(Exception):
    """The model cannot be run incrementally (it cannot be traced); the reason is the message."""


_POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_POINTWISE_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    torch.add,
    torch.sub,
    torch.mul,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.sigmoid,
    F.dropout,
}
_POINTWISE_METHODS = {"add", "sub", "mul", "relu", "sigmoid", "tanh", "contiguous", "clone", "float"}


def window_starts(n: int, w: int, s: int) -> list[int]:
    """Where Captum's Occlusion puts its windows along an axis of ``n`` voxels.

    ``ceil((n - w) / s) + 1`` windows at ``k * s``; the last ones are cut at the border.
    """
    return [k * s for k in range(math.ceil((n - w) / s) + 1)]


@dataclass
class _Patch:
    """A box of size ``size`` at ``starts`` (one row per window) of a tensor of spatial ``shape``."""

    data: torch.Tensor  # (B, C, *size)
    starts: np.ndarray  # (B, 3) int
    shape: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.data.shape[2:])


def _norm_is_pointwise(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return (not m.training) and m.track_running_stats and m.running_mean is not None
    return False


def _window_params(m: nn.Module) -> tuple[Any, ...] | None:
    """(kernel, stride, padding, dilation, pad value) of a 3D conv or pool it can run on a box."""

    def three(v: Any) -> tuple[int, int, int]:
        return tuple(int(a) for a in v) if isinstance(v, tuple | list) else (int(v),) * 3

    if isinstance(m, nn.Conv3d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            return None
        return three(m.kernel_size), three(m.stride), three(m.padding), three(m.dilation), 0.0
    if isinstance(m, nn.MaxPool3d) and not m.ceil_mode and not m.return_indices:
        return (
            three(m.kernel_size),
            three(m.stride or m.kernel_size),
            three(m.padding),
            three(m.dilation),
            -math.inf,
        )
    if isinstance(m, nn.AvgPool3d) and not m.ceil_mode and m.count_include_pad and m.divisor_override is None:
        return three(m.kernel_size), three(m.stride or m.kernel_size), three(m.padding), (1, 1, 1), 0.0
    return None


class IncrementalOcclusion:
    """A traced model with its unoccluded activations, to score batches of occluded windows.

    Parameters
    ----------
    module : torch.nn.Module
        The scored model (its output is what Captum's ``target`` indexes).
    x : torch.Tensor
        The unoccluded input, ``(1, C, Z, Y, X)``.

    Raises
    ------
    NotIncremental
        The model cannot be traced by ``torch.fx`` (data-dependent control flow).
    """

    def __init__(self, module: nn.Module, x: torch.Tensor) -> None:
        try:
            self.gm = torch.fx.symbolic_trace(module)
        except Exception as exc:  # fx raises many kinds of errors for code it cannot trace
            raise NotIncremental(
                f"the model cannot be traced for incremental occlusion ({type(exc).__name__})"
            ) from None
        folded = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)
        calls = [
            n.target
            for n in self.gm.graph.nodes
            if n.op == "call_module" and isinstance(self.gm.get_submodule(str(n.target)), folded)
        ]
        # (the traced GraphModule itself is made in training mode: ask the modules it calls)
        if not any(m.training for m in module.modules()) and len(calls) == len(set(calls)):
            # batch norms folded into the convolutions before them (torch.fx's own pass): one
            # pass less over every patch; the same function up to float rounding. Not when a
            # convolution or norm is called twice: the pass would fold one call's norm into
            # both (a ReLU module called at several places, as in MONAI's ResNet, is fine)
            from torch.fx.experimental.optimization import fuse

            self.gm = fuse(self.gm, no_trace=True)
        self.x = x
        self.cache: dict[torch.fx.Node, Any] = {}
        self.full_from: dict[str, int] = {}
        with torch.no_grad():
            self.output = self._run_cached(x)
            if any(getattr(m, "keeps_reference_labels", False) for m in module.modules()):
                # a wrapper that keeps the segmentation of the unoccluded input does so in Python,
                # which tracing leaves out: one forward of the module itself keeps it
                module(x)

    def _run_cached(self, x: torch.Tensor) -> Any:
        cache = self.cache

        class Recorder(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                out = super().run_node(n)
                cache[n] = out
                return out

        return Recorder(self.gm).run(x)

    # -- one batch of windows --------------------------------------------------------------------
    def outputs(
        self,
        starts: np.ndarray,
        window: tuple[int, ...],
        baseline: float,
        stop: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """The model's output for each window of size ``window`` at ``starts`` (B, 3) occluded.

        Windows are cut at ``stop`` (per axis; default: the input's end), as Captum cuts them
        at the end of the tensor it slides over.
        """
        state: dict[torch.fx.Node, Any] = {}
        with torch.no_grad():
            for node in self.gm.graph.nodes:
                if node.op == "placeholder":
                    state[node] = self._occluded_input(starts, window, baseline, stop)
                elif node.op == "output":
                    return self._full(state, node.args[0], len(starts))
                else:
                    state[node] = self._step(node, state, len(starts))
        raise NotIncremental("the traced graph has no output")  # pragma: no cover

    def _occluded_input(
        self, starts: np.ndarray, window: tuple[int, ...], baseline: float, stop: tuple[int, ...] | None
    ) -> _Patch:
        shape = tuple(self.x.shape[2:])
        end = np.minimum(np.array(stop if stop is not None else shape), np.array(shape))
        size = tuple(min(w, n) for w, n in zip(window, shape, strict=True))
        box = np.minimum(starts, np.array(shape) - np.array(size))  # windows cut at the border
        data = torch.stack(
            [self.x[0, :, b[0] : b[0] + size[0], b[1] : b[1] + size[1], b[2] : b[2] + size[2]] for b in box]
        ).clone()
        for i, (st, b) in enumerate(zip(starts, box, strict=True)):
            lo = st - b
            hi = np.minimum(st + np.array(window), end) - b
            data[i, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = baseline
        return _Patch(data, box.astype(int), shape)

    def _step(self, node: torch.fx.Node, state: dict, batch: int) -> Any:
        inputs = [a for a in node.all_input_nodes]
        changed = [a for a in inputs if not isinstance(state.get(a, "same"), str)]
        if node.op == "get_attr" or not changed:
            return "same"
        if node.op == "call_module":
            m = self.gm.get_submodule(str(node.target))
            one_input = len(node.args) == 1 and not node.kwargs  # m(x): nothing else would reach m
            if len(changed) == 1 and isinstance(state[changed[0]], _Patch) and one_input:
                patch = state[changed[0]]
                if isinstance(m, _POINTWISE_MODULES) or _norm_is_pointwise(m):
                    return _Patch(m(patch.data), patch.starts, patch.shape)
                params = _window_params(m)
                if params is not None and len(patch.shape) == 3:
                    out = self._windowed(m, params, patch, self.cache[changed[0]], self.cache[node])
                    if out is not None:
                        return out
        elif node.op in ("call_function", "call_method") and all(
            isinstance(state[a], _Patch | str) for a in inputs
        ):
            pointwise = (
                node.target in _POINTWISE_FUNCTIONS
                if node.op == "call_function"
                else node.target in _POINTWISE_METHODS
            )
            channel_cat = node.op == "call_function" and node.target is torch.cat and _cat_dim(node) == 1
            if (pointwise or channel_cat) and self._same_grid(node, inputs):
                out = self._union(node, state)
                if out is not None:
                    return out
        if not any(isinstance(state[a], torch.Tensor) for a in changed):  # where the patches end
            self.full_from[_describe(node, self.gm)] = self.full_from.get(_describe(node, self.gm), 0) + 1
        return self._run_full(node, state, batch)

    def _same_grid(self, node: torch.fx.Node, inputs: list) -> bool:
        """Every tensor argument on the output's grid, or broadcast over it (a per-channel constant)."""
        out = self.cache[node]
        if not isinstance(out, torch.Tensor) or out.dim() != 5:
            return False
        for a in inputs:
            v = self.cache[a]
            if not isinstance(v, torch.Tensor) or v.numel() == 1:
                continue
            if v.dim() == 5 and tuple(v.shape[2:]) in (tuple(out.shape[2:]), (1, 1, 1)):
                continue
            if 3 <= v.dim() < 5 and tuple(v.shape[-3:]) == (1, 1, 1):  # e.g. a (C, 1, 1, 1) constant
                continue
            return False  # it would broadcast along a spatial axis: not local
        return True

    def _union(self, node: torch.fx.Node, state: dict) -> Any:
        """A point-wise operation or channel concatenation on the union of its inputs' boxes."""
        patches = [state[a] for a in node.all_input_nodes if isinstance(state[a], _Patch)]
        shape = patches[0].shape
        lo = np.min([p.starts for p in patches], axis=0)
        hi = np.max([p.starts + np.array(p.size) for p in patches], axis=0)
        size = np.max(hi - lo, axis=0)
        starts = np.clip(lo, 0, np.array(shape) - size)
        if np.all(size >= np.array(shape)):
            return None  # the boxes cover the tensor: run it in full
        sub = {
            a: (
                self._gather(state, a, starts, tuple(size))
                if _is_grid(self.cache[a], shape)
                else self.cache[a]
            )
            for a in node.all_input_nodes
        }
        args = torch.fx.node.map_arg(node.args, lambda a: sub[a])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: sub[a])
        fn = node.target if node.op == "call_function" else getattr(args[0], node.target)
        out = fn(*args, **kwargs) if node.op == "call_function" else fn(*args[1:], **kwargs)
        return _Patch(out, starts.astype(int), shape)

    def _gather(
        self, state: dict, a: torch.fx.Node, starts: np.ndarray, size: tuple[int, ...]
    ) -> torch.Tensor:
        """Node ``a``'s current values in the box ``size`` at ``starts`` of every window."""
        cached = self.cache[a]
        out = _empty_like_layout(cached, (len(starts), cached.shape[1], *size))
        for i, st in enumerate(starts):
            out[i] = cached[0, :, st[0] : st[0] + size[0], st[1] : st[1] + size[1], st[2] : st[2] + size[2]]
        patch = state[a]
        if isinstance(patch, _Patch):
            _paste(out, starts, patch, offset=np.zeros(3, int))
        return out

    def _windowed(
        self, m: nn.Module, params: tuple, patch: _Patch, x_cached: torch.Tensor, y_cached: torch.Tensor
    ) -> Any:
        """A conv or pool on the output box the input box can change, from the region it needs."""
        k, s, p, d, pad_value = (np.array(v) if not isinstance(v, float) else v for v in params)
        n_out = np.array(y_cached.shape[2:])
        a, b = patch.starts, patch.starts + np.array(patch.size)
        o_lo = np.maximum(0, -((-(a + p - d * (k - 1))) // s))  # ceil division
        o_hi = np.minimum(n_out, (b - 1 + p) // s + 1)
        size = np.minimum(np.max(o_hi - o_lo, axis=0), n_out)
        if np.all(size >= n_out):
            return None  # the box covers the output: run it in full
        starts = np.clip(o_lo, 0, n_out - size)
        in_lo = starts * s - p  # in the unpadded input's coordinates
        in_len = (size - 1) * s + d * (k - 1) + 1
        region = _crop(x_cached, in_lo, tuple(int(v) for v in in_len), pad_value)
        _paste(region, in_lo, patch, offset=np.zeros(3, int))
        out = _apply_unpadded(m, region)
        return _Patch(out, starts.astype(int), tuple(int(v) for v in n_out))

    def _run_full(self, node: torch.fx.Node, state: dict, batch: int) -> torch.Tensor:
        """Run ``node`` as in the model, on full tensors (cached values with the patches pasted)."""
        env = {a: self._full(state, a, batch) for a in node.all_input_nodes}
        args = torch.fx.node.map_arg(node.args, lambda a: env[a])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
        if node.op == "call_module":
            return self.gm.get_submodule(str(node.target))(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)

    def _full(self, state: dict, a: Any, batch: int) -> Any:
        if not isinstance(a, torch.fx.Node):
            return torch.fx.node.map_arg(a, lambda n: self._full(state, n, batch))
        v = state.get(a, "same")
        if isinstance(v, _Patch):
            cached = self.cache[a]
            full = _empty_like_layout(cached, (batch, *cached.shape[1:])).copy_(
                cached.expand(batch, *cached.shape[1:])
            )
            _paste(full, np.zeros_like(v.starts), v, offset=np.zeros(3, int))
            state[a] = full  # materialised once
            return full
        if isinstance(v, str):  # "same"
            return self.cache[a]
        return v


def _paste(dest: torch.Tensor, dest_starts: np.ndarray, patch: _Patch, offset: np.ndarray) -> None:
    """Paste each window's patch into ``dest`` (a region per window at ``dest_starts`` in coordinates
    shifted by ``offset``), where they overlap."""
    size = np.array(dest.shape[2:])
    for i, (ds, ps) in enumerate(zip(dest_starts, patch.starts + offset, strict=True)):
        lo = np.maximum(ds, ps)
        hi = np.minimum(ds + size, ps + np.array(patch.size))
        if np.any(hi <= lo):
            continue
        d0, p0 = lo - ds, lo - ps
        ln = hi - lo
        dest[i, :, d0[0] : d0[0] + ln[0], d0[1] : d0[1] + ln[1], d0[2] : d0[2] + ln[2]] = patch.data[
            i, :, p0[0] : p0[0] + ln[0], p0[1] : p0[1] + ln[1], p0[2] : p0[2] + ln[2]
        ]


def _crop(cached: torch.Tensor, starts: np.ndarray, size: tuple[int, ...], pad_value: float) -> torch.Tensor:
    """The box ``size`` at ``starts`` (one row per window, possibly outside) of ``cached``
    ``(1, C, *shape)``, the outside filled with ``pad_value`` (the layer's padding), in
    ``cached``'s memory layout.

    Only the boxes are copied: padding the whole cached tensor per batch cost more than the
    convolutions on the boxes.
    """
    shape = np.array(cached.shape[2:])
    out = _empty_like_layout(cached, (len(starts), cached.shape[1], *size))
    for i, st in enumerate(starts):
        lo = np.maximum(st, 0)
        hi = np.minimum(st + np.array(size), shape)
        if np.any(lo != st) or np.any(hi != st + np.array(size)):
            out[i].fill_(pad_value)  # only a box reaching outside has padding to fill
        if np.any(hi <= lo):
            continue
        d = lo - st
        ln = hi - lo
        out[i, :, d[0] : d[0] + ln[0], d[1] : d[1] + ln[1], d[2] : d[2] + ln[2]] = cached[
            0, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]
        ]
    return out


def _empty_like_layout(cached: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An empty tensor of ``shape`` in ``cached``'s memory layout: a channels-last model (the
    engine's tuning for perturbation methods) gets channels-last boxes, which its convolutions
    take as they are instead of reordering every box."""
    channels_last = cached.dim() == 5 and cached.shape[1] > 1 and not cached.is_contiguous()
    if channels_last and cached.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.empty(
            shape, dtype=cached.dtype, device=cached.device, memory_format=torch.channels_last_3d
        )
    return torch.empty(shape, dtype=cached.dtype, device=cached.device)


def _apply_unpadded(m: nn.Module, region: torch.Tensor) -> torch.Tensor:
    """``m`` on an already padded region (its own padding set to 0)."""
    if isinstance(m, nn.Conv3d):
        return F.conv3d(region, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
    if isinstance(m, nn.MaxPool3d):
        return F.max_pool3d(region, m.kernel_size, m.stride, 0, m.dilation)
    return F.avg_pool3d(region, m.kernel_size, m.stride, 0)


def _cat_dim(node: torch.fx.Node) -> int | None:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return 1 if dim in (1, -4) else None


def _is_grid(v: Any, shape: tuple[int, ...]) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 5 and tuple(v.shape[2:]) == tuple(shape)


def _describe(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    return getattr(node.target, "__name__", str(node.target))
