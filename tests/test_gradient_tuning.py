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
from napari_mlmi_interp.explain.onednn_conv import OneDnnConv3d
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
    for batch in (1, 3):
        x = torch.randn(batch, 6, 12, 10, 14)
        with torch.no_grad():
            assert torch.equal(tuned(x), net(x))
        for method in (ca.Saliency, ca.InputXGradient):
            ours = method(tuned).attribute(x, target=1).detach()
            theirs = method(net).attribute(x, target=1).detach()
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))
    assert all(p.requires_grad for p in net.parameters())  # the user's model as it was


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
