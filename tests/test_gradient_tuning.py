"""The gradient path's tuning (:mod:`napari_mlmi_interp.explain.tuning`) and the device choice.

The stem convolution's input gradient by stride phases must equal autograd's for any kernel,
stride and padding; the tuned copy must give Captum's maps and leave the user's model alone.
"""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.explain.device import on_device, resolve_device
from napari_mlmi_interp.explain.fused_grad import BnReluConv3d
from napari_mlmi_interp.explain.onednn_conv import OneDnnConv3d
from napari_mlmi_interp.explain.pool_grad import ChannelsLastMaxPool3d
from napari_mlmi_interp.explain.stem_grad import StemConv3d, stem_input_grad
from napari_mlmi_interp.explain.tuning import gradient_copy


@pytest.mark.parametrize("seed", range(6))
def test_stem_input_grad_equals_autograd_for_any_kernel_stride_and_padding(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        k = tuple(int(v) for v in rng.choice([1, 2, 3, 4, 5, 7], 3))
        stride = tuple(int(v) for v in rng.choice([1, 2, 3], 3))
        padding = tuple(int(rng.integers(0, kk + 1)) for kk in k)
        shape = tuple(int(rng.integers(max(kk, 5), 14)) for kk in k)
        cin, cout = int(rng.integers(1, 3)), int(rng.choice([3, 8]))
        x = torch.randn(2, cin, *shape, requires_grad=True)
        w = torch.randn(cout, cin, *k)
        y = F.conv3d(x, w, stride=stride, padding=padding)
        g = torch.randn_like(y)
        expected = torch.autograd.grad(y, x, g)[0]
        got = stem_input_grad(g, w, shape, stride, padding)
        assert got.shape == expected.shape
        err = float((got - expected).abs().max() / expected.abs().max())
        assert err < 1e-5, (k, stride, padding, shape, err)


def test_stem_input_grad_with_padding_beyond_the_kernel_and_a_batch():
    """Padding wider than a stride phase's taps takes the depthwise path, a batch is per sample."""
    for k, stride, padding in (((3, 3, 3), (2, 2, 2), (3, 3, 3)), ((7, 7, 7), (2, 2, 2), (3, 3, 3))):
        x = torch.randn(3, 1, 11, 12, 13, requires_grad=True)
        w = torch.randn(4, 1, *k)
        y = F.conv3d(x, w, stride=stride, padding=padding)
        g = torch.randn_like(y)
        expected = torch.autograd.grad(y, x, g)[0]
        got = stem_input_grad(g, w, (11, 12, 13), stride, padding)
        assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5


def _same_forward_and_maps(tuned: nn.Module, net: nn.Module) -> None:
    """The tuned copy's forward equals the model's bit for bit, and its Saliency and Input x
    Gradient maps equal Captum's on the model to float rounding, for one sample and three."""
    for batch in (1, 3):
        x = torch.randn(batch, 6, 12, 10, 14)
        with torch.no_grad():
            assert torch.equal(tuned(x), net(x))
        for method in (ca.Saliency, ca.InputXGradient):
            ours = method(tuned).attribute(x, target=1).detach()
            theirs = method(net).attribute(x, target=1).detach()
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


def test_onednn_convolutions_give_autograds_input_gradient_and_the_models_forward():
    """Stride-1 convolutions of any kernel, padding and dilation (1x1x1 included): the same
    forward bit for bit, the input gradient to float rounding; strided ones are left alone."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(6, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(16, 8, 1),
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv3d(8, 8, (3, 1, 5), padding=(0, 0, 2)),
        nn.Conv3d(8, 4, 3, stride=2),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
    ).eval()
    tuned = gradient_copy(net)
    kinds = [type(m) for m in tuned]
    assert kinds[:8:2] == [OneDnnConv3d] * 4 and kinds[7] is nn.Conv3d
    _same_forward_and_maps(tuned, net)
    assert all(p.requires_grad for p in net.parameters())  # the user's model as it was


class _Transition(nn.Sequential):
    """A Sequential subclass that keeps Sequential's forward (as MONAI DenseNet's transition)."""


class _OwnForward(nn.Sequential):
    """A Sequential subclass with its own forward: its children's order is not its dataflow."""

    def forward(self, x):
        return self[2](x) + self[2](self[1](self[0](x)))


def _bn(channels: int) -> nn.BatchNorm3d:
    bn = nn.BatchNorm3d(channels)
    nn.init.normal_(bn.running_mean)
    nn.init.uniform_(bn.running_var, 0.3, 3.0)
    nn.init.uniform_(bn.weight, -2.0, 2.0)
    nn.init.normal_(bn.bias)
    return bn


def test_batch_norm_relu_convolution_runs_fuse_with_the_models_forward_and_captums_maps():
    """DenseNet's pre-activation order (batch norm, ReLU, stride-1 convolution) in a Sequential
    fuses: the forward bit for bit, the gradients to float rounding; a training-mode batch
    norm, a hooked child, a strided convolution and a Sequential with its own forward do not."""
    torch.manual_seed(0)
    hooked = _bn(8)
    hooked.register_forward_hook(lambda *_: None)
    training = _bn(8)
    net = nn.Sequential(
        nn.Conv3d(6, 8, 3, padding=1),
        _bn(8),
        nn.ReLU(inplace=True),
        nn.Conv3d(8, 12, 1),  # fused
        _Transition(_bn(12), nn.ReLU(), nn.Conv3d(12, 8, 3, padding=2, dilation=2)),  # fused
        hooked,
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, padding=1),  # a hook: kept
        training,
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, padding=1),  # training mode: kept
        _bn(8),
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=2),  # strided: kept
        _OwnForward(_bn(8), nn.ReLU(), nn.Conv3d(8, 8, 1)),  # its own forward: kept
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
    )
    net.eval()
    training.train()
    tuned = gradient_copy(net)
    fused = [m for m in tuned.modules() if isinstance(m, BnReluConv3d)]
    assert len(fused) == 2 and isinstance(tuned[1], BnReluConv3d) and isinstance(tuned[2][0], BnReluConv3d)
    assert [type(tuned[i]) for i in (3, 6, 9)] == [nn.BatchNorm3d] * 3  # hooked, training, strided
    assert type(tuned[-3][0]) is nn.BatchNorm3d  # in a Sequential with its own forward
    assert all(type(m) is nn.BatchNorm3d for m in net.modules() if "BatchNorm" in type(m).__name__)
    _same_forward_and_maps(tuned, net)


@pytest.mark.parametrize(
    "cfg",
    [
        {"kernel_size": 3, "stride": 2, "padding": 1},  # MONAI ResNet's and DenseNet's stems
        {"kernel_size": 2},  # the demo zoo's
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},
        {"kernel_size": (3, 2, 3), "stride": (1, 2, 2), "padding": (1, 0, 1), "dilation": (2, 1, 1)},
    ],
)
def test_channels_last_max_pooling_gives_the_same_maxima_and_gradient_bit_for_bit(cfg):
    """Ties included: ReLU zeros, a constant block, values rounded to one decimal."""
    torch.manual_seed(0)
    pool = nn.MaxPool3d(**cfg)
    fast = ChannelsLastMaxPool3d(pool)
    x = torch.relu(torch.randn(2, 8, 17, 16, 15)).round(decimals=1)
    x[..., :6] = 0.5
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = pool(a), fast(b)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad) and yb.is_contiguous()
    with torch.no_grad():  # no gradient wanted, or a channels-last input: the pooling as given
        assert torch.equal(fast(x), pool(x))
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(fast(cl.requires_grad_(True)), pool(x))
    tuned = gradient_copy(nn.Sequential(nn.Conv3d(1, 4, 3), pool, nn.MaxPool3d(2, return_indices=True)))
    assert type(tuned[1]) is ChannelsLastMaxPool3d and type(tuned[2]) is nn.MaxPool3d


def test_densenet121_fuses_all_but_its_stem_and_head_batch_norms():
    monai = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    net = monai.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    tuned = gradient_copy(net)
    assert sum(isinstance(m, BnReluConv3d) for m in tuned.modules()) == 119  # of 121
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(tuned(x), net(x))
    ours = ca.Saliency(tuned).attribute(x, target=1).detach()
    theirs = ca.Saliency(net).attribute(x, target=1).detach()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * float(theirs.abs().max()))


class _Stem(nn.Module):
    """MONAI ResNet's stem (7³, stride 1, 1 -> 8 channels, batch norm, ReLU, max pooling), a
    strided convolution, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 8, 7, stride=1, padding=3)
        self.bn = nn.BatchNorm3d(8)
        self.pool = nn.MaxPool3d(3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(8, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        stem = self.pool(torch.relu(self.bn(self.conv1(x))))
        return self.head(torch.relu(self.conv2(stem)).mean(dim=(2, 3, 4)))


def test_the_tuned_copy_gives_captums_maps_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = _Stem().eval()
    nn.init.normal_(net.bn.running_mean)
    tuned = gradient_copy(net)
    assert isinstance(tuned.conv1, StemConv3d) and not isinstance(tuned.conv2, StemConv3d)  # 8 channels in
    assert isinstance(net.conv1, nn.Conv3d) and net.conv1.weight.requires_grad  # the user's model as it was
    assert gradient_copy(net) is tuned  # made once per model
    x = torch.randn(1, 1, 20, 18, 16)
    x[..., :8] = 0.5  # a constant background: ties in the max pooling, to be broken as the model breaks them
    x.requires_grad_(True)
    for method in (ca.Saliency, ca.InputXGradient):
        ours, theirs = (
            method(tuned).attribute(x, target=2).detach(),
            method(net).attribute(x, target=2).detach(),
        )
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))
    ig = ca.IntegratedGradients(tuned).attribute(x, target=1, n_steps=8).detach()
    np.testing.assert_allclose(
        ig,
        ca.IntegratedGradients(net).attribute(x, target=1, n_steps=8).detach(),
        rtol=1e-4,
        atol=1e-5 * float(ig.abs().max()),
    )
    # without a stem or a stride-1 convolution (or as TorchScript) there is nothing to tune
    assert gradient_copy(nn.Sequential(nn.Conv3d(8, 2, 3, stride=2))) is None
    assert gradient_copy(torch.jit.script(nn.Sequential(nn.Conv3d(1, 2, 3)))) is None


def test_device_auto_is_the_cpu_here_and_a_missing_gpu_is_a_clear_error():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU").type == "cpu"
    with pytest.raises(InputError, match="device must be one of auto"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="device must be one of auto"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")
    else:
        with pytest.raises(InputError, match="CUDA GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    net = nn.Conv3d(1, 1, 3)
    assert on_device(net, torch.device("cpu")) is net


def test_explain_records_the_device_and_refuses_a_missing_one(small_classifier):
    from napari_mlmi_interp.explain import explain

    model, vol = small_classifier
    result = explain(vol, model, "saliency", target=1, device="cpu")
    assert result.provenance["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            explain(vol, model, "saliency", target=1, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA GPU (the device machine)")
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion", "gradcam"])
def test_a_run_on_the_gpu_gives_the_cpu_map(small_classifier, method):
    from napari_mlmi_interp.explain import explain

    model, vol = small_classifier
    params = {"integrated_gradients": {"n_steps": 8}, "occlusion": {"window": 4, "stride": 2}}.get(method)
    cpu = explain(vol, model, method, target=1, params=params, device="cpu")
    gpu = explain(vol, model, method, target=1, params=params, device="cuda")
    assert gpu.provenance["device"].startswith("cuda") and cpu.provenance["device"] == "cpu"
    scale = float(np.abs(cpu.model_map).max())
    np.testing.assert_allclose(gpu.model_map, cpu.model_map, rtol=1e-3, atol=1e-4 * scale)
    assert next(model.module.parameters()).device.type == "cpu"  # the user's model stayed put


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA GPU (the device machine)")
def test_a_segmenter_and_coarse_to_fine_on_the_gpu_give_the_cpu_maps(small_classifier):
    """The paths that keep CPU state: the segmentation kept from the run's own pass, the blend."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import load_model
    from napari_mlmi_interp.models.spec import ModelSpec

    torch.manual_seed(0)
    seg = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1)).eval()
    spec = {"name": "seg", "task": "segmentation", "classes": ["bg", "fg"], "normalization": {"kind": "none"}}
    segmenter = load_model(ModelSpec.from_dict(spec), module=seg)
    _, vol = small_classifier
    roi = np.zeros(vol.shape, np.uint8)
    roi[3:8, 4:9, 5:10] = 1
    for method, params in (("saliency", None), ("occlusion", {"window": 4, "stride": 2})):
        cpu = explain(vol, segmenter, method, target="fg", roi=roi, params=params, device="cpu")
        gpu = explain(vol, segmenter, method, target="fg", roi=roi, params=params, device="cuda")
        scale = float(np.abs(cpu.model_map).max())
        np.testing.assert_allclose(gpu.model_map, cpu.model_map, rtol=1e-3, atol=1e-4 * scale)
        assert gpu.prediction.computed == cpu.prediction.computed
    model, vol = small_classifier
    c2f = {"window": 4, "stride": 2, "strategy": "coarse_to_fine"}
    cpu = explain(vol, model, "occlusion", target=1, params=c2f, device="cpu")
    gpu = explain(vol, model, "occlusion", target=1, params=c2f, device="cuda")
    np.testing.assert_allclose(
        gpu.model_map, cpu.model_map, rtol=1e-3, atol=1e-4 * float(np.abs(cpu.model_map).max())
    )


def test_a_changed_model_gets_a_new_tuned_copy():
    """Weights changed in place after a run (a randomisation test does that) are the ones explained."""
    torch.manual_seed(0)
    net = _Stem().eval()
    first = gradient_copy(net)
    assert gradient_copy(net) is first
    with torch.no_grad():
        net.conv1.weight.normal_()
    second = gradient_copy(net)
    assert second is not first
    torch.testing.assert_close(second.conv1.weight, net.conv1.weight)
    net.train()
    assert gradient_copy(net) is not second and gradient_copy(net).training


@pytest.fixture(scope="module")
def small_classifier():
    from napari_mlmi_interp.io.volume import Geometry, Volume
    from napari_mlmi_interp.models import load_model
    from napari_mlmi_interp.models.spec import ModelSpec

    torch.manual_seed(0)
    net = _Stem().eval()
    spec = ModelSpec.from_dict(
        {
            "name": "stem",
            "task": "classification",
            "classes": ["a", "b", "c"],
            "normalization": {"kind": "none"},
            "cam_layers": ["conv2"],
        }
    )
    vol = Volume(
        np.random.default_rng(0).normal(size=(12, 14, 16)).astype(np.float32),
        Geometry((12, 14, 16), (1, 1, 1), (0, 0, 0)),
    )
    return load_model(spec, module=net), vol
