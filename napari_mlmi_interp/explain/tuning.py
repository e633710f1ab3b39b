"""Execution tuning that was measured to pay off, and only where it keeps the maps.

**Channels-last 3D for perturbation methods on a CPU.** oneDNN runs 3D convolutions faster
on channels-last (NDHWC) tensors. Measured on 2 threads, a batch of 4 at 64³: forward
DenseNet121 0.181 s -> 0.145 s (1.25x), demo classifier 0.064 s -> 0.049 s (1.31x); outputs
equal to 4e-7 relative. Occlusion and feature ablation only run forwards, so their maps are
differences of these outputs and stay equal to float rounding; they get a channels-last
*copy* of the model (the user's module is untouched; the copy is made once per module).
Gradient methods do not get that copy: their backward gained less from channels-last
(DenseNet121 1.08x); what pays off for them is below.

**The input gradient of a stem convolution.** PyTorch's CPU backward of a convolution with
few input channels and a large kernel (MONAI ResNet's 7³ stem, 1 -> 64 channels) is far slower
than its forward: 1.9 s against 0.26 s at 96³, half of a whole ResNet18 gradient. Autograd-only
methods (Saliency, Input x Gradient, SmoothGrad, Integrated Gradients: no module hooks) get a
*copy* of the model whose convolutions with at most 4 input channels (dilation 1, one group)
compute their input gradient by stride phases (:func:`.stem_grad.stem_input_grad`): stride 1
as depthwise correlations of the output gradient with the flipped kernel, 0.35 s instead of
1.8 s at 96³; a strided one as a single convolution with every phase's sub-kernel as an output
channel, DenseNet121's (stride 2) 47 ms instead of 230 ms at 96³, 129 ms instead of 620 ms at
128³; equal to autograd's to 2e-6 of its largest value. The copy needs no parameter gradients,
so none are computed. Making the stem's output channels-last as well ran the layers after it
faster (ResNet18's max pooling 0.25 s -> 0.05 s) but moved its Saliency map by 1.6e-2 of its
largest value (the max pooling chose otherwise among near-equal values): not done.

**The input gradient of the other stride-1 convolutions.** PyTorch runs a convolution of one
small sample (``channels x depth x height`` at most 20480) with its reference kernel, forward
and backward: DenseNet121's 128 -> 32 channel 3³ convolutions at 12³ took 5.3 ms forward and
7.6 ms backward, oneDNN 1.1 and 1.0 ms. The copy's stride-1 convolutions hand their input
gradient to oneDNN (:class:`.onednn_conv.OneDnnConv3d`); their forward stays PyTorch's, since
oneDNN's rounding switched a few of DenseNet121's ReLUs and moved its Saliency map by 3.6e-3
of its largest value. DenseNet121's Saliency at 96³: 0.74 s as given, 0.62 s with the stem
alone, 0.47 s with both.

**Batch norms folded into the backward.** A frozen batch norm is a per-channel scale in the
backward; where one feeds a ReLU and then a stride-1 convolution, consecutive children of an
``nn.Sequential`` (DenseNet's pre-activation order), the three run as one
:class:`.fused_grad.BnReluConv3d`: the forward as the model runs it, the backward one oneDNN
call with the scale folded into the kernel and the ReLU's mask. DenseNet121's Saliency at 96³
0.482 -> 0.452 s (median of 7; 119 of its 121 batch norms), 1.022 -> 0.899 s at 128³. Max
poolings run on a channels-last copy of their input, with the same maxima and indices
(:class:`.pool_grad.ChannelsLastMaxPool3d`): DenseNet121's stem pooling 30 -> 14.5 ms forward
and backward.

bf16 autocast ran DenseNet121's forward 2x faster but moved its outputs by 0.6 % of their
largest value (0.0040 of 0.63; the demo classifier 0.4 %, 0.039 of 9.4), the order of the
output differences occlusion measures: not enabled.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

__all__ = ["channels_last", "gradient_copy"]

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GRADIENT_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def channels_last(module: Any) -> Any | None:
    """A channels-last-3D copy of ``module`` (cached), or None when it has no 3D convolution."""
    import torch

    try:
        if module in _COPIES:
            return _COPIES[module]
    except TypeError:  # not weakly referenceable
        return None
    if not any(isinstance(m, torch.nn.Conv3d) for m in module.modules()):
        return None
    try:
        tuned = copy.deepcopy(module).to(memory_format=torch.channels_last_3d)
    except Exception:  # TorchScript or exotic modules: run as given
        return None
    tuned.eval()
    _COPIES[module] = tuned
    return tuned


def gradient_copy(module: Any) -> Any | None:
    """A frozen copy of ``module`` (cached) whose stem convolutions' input gradient is
    :func:`.stem_grad.stem_input_grad`, whose other stride-1 convolutions' is oneDNN's
    (:class:`.onednn_conv.OneDnnConv3d`), whose max poolings run channels-last
    (:class:`.pool_grad.ChannelsLastMaxPool3d`), and whose batch norm, ReLU, convolution runs
    are fused (:func:`.fused_grad.fuse_sequentials`).

    None when it has no such convolution, or cannot be copied (TorchScript): run as given. The
    copy is remade when the model's weights or train/eval flags change (:func:`_fingerprint`);
    forward hooks registered on a replaced convolution are not carried over (a hooked child
    is never fused).
    """
    from .fused_grad import fuse_sequentials
    from .onednn_conv import OneDnnConv3d, eligible
    from .pool_grad import ChannelsLastMaxPool3d
    from .pool_grad import eligible as pool_eligible
    from .stem_grad import StemConv3d

    try:
        cached = _GRADIENT_COPIES.get(module)
    except TypeError:  # not weakly referenceable
        return None
    if cached is not None and cached[0] == _fingerprint(module):
        return cached[1]
    if not any(_is_stem(m) or eligible(m) for m in module.modules()):
        return None
    try:
        tuned = copy.deepcopy(module)
    except Exception:  # TorchScript or exotic modules: run as given
        return None
    for p in tuned.parameters():
        p.requires_grad_(False)

    def swapped(m: Any) -> Any:
        if _is_stem(m):
            return StemConv3d(m)
        if eligible(m):
            return OneDnnConv3d(m)
        return ChannelsLastMaxPool3d(m) if pool_eligible(m) else None

    for name, m in list(tuned.named_modules()):
        if name and (new := swapped(m)) is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(tuned.get_submodule(parent) if parent else tuned, leaf, new)
    if (whole := swapped(tuned)) is not None:  # the model is the convolution itself
        tuned = whole
    fuse_sequentials(tuned)
    _GRADIENT_COPIES[module] = (_fingerprint(module), tuned)
    return tuned


def _fingerprint(module: Any) -> tuple:
    """What a copy must match: the train/eval flags and every parameter and buffer (identity and
    in-place version), so weights changed after the copy was made (a randomisation test, a
    ``load_state_dict``) make a new copy instead of explaining the old model."""
    tensors = [*module.parameters(), *module.buffers()]
    return (
        tuple(m.training for m in module.modules()),
        tuple((id(t), t._version) for t in tensors),
    )


def _is_stem(m: Any) -> bool:
    import torch

    return (
        type(m) is torch.nn.Conv3d
        and m.in_channels <= 4
        and m.groups == 1
        and tuple(m.dilation) == (1, 1, 1)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )
