"""Exact incremental occlusion: the same map as Captum's full Occlusion, per architecture."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

from napari_mlmi_interp.explain.methods.occlusion import occlusion, occlusion_windows
from napari_mlmi_interp.explain.tuning import channels_last

P = {"window": 8, "stride": 4, "baseline": 0.0, "perturbations_per_eval": 6, "strategy": "incremental"}


def _captum(
    net: nn.Module, x: torch.Tensor, target: int, w: int, s: int, baseline: float = 0.0
) -> torch.Tensor:
    c = x.shape[1]
    return ca.Occlusion(net).attribute(
        x,
        sliding_window_shapes=(c, *[min(w, n) for n in x.shape[2:]]),
        strides=(c, s, s, s),
        baselines=baseline,
        target=target,
        perturbations_per_eval=8,
    )


def _same_map(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal to 1e-4 of the map's range (float32 roundoff of the scores only)."""
    span = float(theirs.max() - theirs.min())
    assert span > 0
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-4 * span)


class MeshNet(nn.Module):
    """MeshNet-style (brainchop): dilated 3x3x3 convolutions, batch norm, ReLU, 1x1x1 head."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(1, 5, 3, padding=1), nn.BatchNorm3d(5), nn.ReLU()]
        for d in (2, 4, 8, 1):
            layers += [nn.Conv3d(5, 5, 3, padding=d, dilation=d), nn.BatchNorm3d(5), nn.ELU()]
        layers.append(nn.Conv3d(5, 3, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RoiSum(nn.Module):
    """A segmenter scored as its class-1 logits summed over a box (as a segmentation target)."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner = inner
        w = torch.zeros(1, 1, n, n, n)
        w[..., 8:16, 10:20, 6:14] = 1.0
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.inner(x)[:, 1:2] * self.w).flatten(1).sum(dim=1, keepdim=True)


def _nets():
    from monai.networks.nets import DenseNet121, UNet, resnet18

    torch.manual_seed(0)
    unet = UNet(3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="batch")
    demo = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool3d(2),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    return {
        "resnet18": (resnet18(spatial_dims=3, n_input_channels=1, num_classes=2), 1),
        "densenet121": (DenseNet121(spatial_dims=3, in_channels=1, out_channels=2), 1),
        "unet_roi": (RoiSum(unet, 24), 0),
        "meshnet_roi": (RoiSum(MeshNet(), 24), 0),
        "small_cnn": (demo, 1),
    }


@pytest.mark.parametrize(
    ("name", "n", "stride"),
    [
        ("resnet18", 24, 4),
        ("densenet121", 32, 8),
        ("unet_roi", 24, 4),
        ("meshnet_roi", 24, 4),
        ("small_cnn", 24, 4),
    ],
)
def test_incremental_map_equals_captums_full_occlusion(name, n, stride):
    net, target = _nets()[name]
    net.eval()
    torch.manual_seed(1)
    x = torch.randn(1, 1, n, n, n)
    info: dict = {}
    with torch.no_grad():
        ours = occlusion(net, x, target, {**P, "stride": stride}, info=info)
        theirs = _captum(net, x, target, P["window"], stride)
        # as explain() runs it on a CPU: a channels-last copy, whose boxes stay channels-last
        tuned = channels_last(net)
        on_copy = occlusion(
            tuned, x.contiguous(memory_format=torch.channels_last_3d), target, {**P, "stride": stride}
        )
    assert info["strategy"] == "incremental"
    _same_map(ours, theirs)
    _same_map(on_copy, theirs)


def test_batch_norms_after_convolutions_are_folded_even_with_a_shared_activation():
    """MONAI's ResNet calls one ReLU module at several places: its batch norms still fold."""
    from napari_mlmi_interp.explain.methods.incremental import IncrementalOcclusion

    net, _ = _nets()["resnet18"]
    net.eval()
    x = torch.randn(1, 1, 24, 24, 24)
    inc = IncrementalOcclusion(net, x)
    called = [inc.gm.get_submodule(str(n.target)) for n in inc.gm.graph.nodes if n.op == "call_module"]
    assert not any(isinstance(m, nn.BatchNorm3d) for m in called)
    with torch.no_grad():
        torch.testing.assert_close(inc.output, net(x), rtol=1e-5, atol=1e-6)
    net.train()  # a model in training mode is traced as it is: nothing folded
    gm = IncrementalOcclusion(net, x).gm
    called = [gm.get_submodule(str(n.target)) for n in gm.graph.nodes if n.op == "call_module"]
    assert any(isinstance(m, nn.BatchNorm3d) for m in called)


def test_windows_cut_at_the_border_and_a_region_give_captums_windows():
    """30 voxels, window 8, stride 4: Captum's last window is cut; over a region, the box's windows."""
    net, target = _nets()["resnet18"]
    net.eval()
    x = torch.randn(1, 1, 30, 26, 28)
    with torch.no_grad():
        _same_map(occlusion(net, x, target, P), _captum(net, x, target, 8, 4))
        region = np.zeros((30, 26, 28), bool)
        region[10:14, 8:12, 12:18] = True
        full = occlusion(net, x, target, {**P, "strategy": "full"}, region)
        _same_map(occlusion(net, x, target, P, region), full)
    assert occlusion_windows((30, 26, 28), 8, 4) == 7 * 6 * 6  # ceil((n - w) / s) + 1 per axis


def test_a_baseline_other_than_zero_and_two_channels():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, stride=2), nn.Flatten(), nn.LazyLinear(3)
    )
    x = torch.randn(1, 2, 16, 16, 16)
    net(x)  # the lazy layer takes its size
    net.eval()
    with torch.no_grad():
        _same_map(occlusion(net, x, 2, {**P, "baseline": -1.5}), _captum(net, x, 2, 8, 4, baseline=-1.5))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            y = y * 2
        return y.flatten(1).mean(1, keepdim=True).expand(-1, 2)


def test_a_model_that_cannot_be_traced_runs_the_full_occlusion_and_says_so():
    net = Branchy().eval()
    x = torch.randn(1, 1, 16, 16, 16)
    info: dict = {}
    with torch.no_grad():
        ours = occlusion(net, x, 1, P, info=info)
    assert info["strategy"] == "full" and "cannot be traced" in info["note"]
    with torch.no_grad():
        _same_map(ours, _captum(net, x, 1, 8, 4))


def test_progress_counts_every_window_and_cancel_stops(tmp_path):
    from napari_mlmi_interp.explain import Cancelled, CancelToken
    from napari_mlmi_interp.explain.observe import observed

    net, target = _nets()["small_cnn"]
    net.eval()
    x = torch.randn(1, 1, 24, 24, 24)
    seen = []
    counted = observed(net, 1 + occlusion_windows((24, 24, 24), 8, 4), lambda d, t: seen.append((d, t)), None)
    with torch.no_grad():
        occlusion(counted, x, target, P)
    assert seen[-1] == (1 + 5**3, 1 + 5**3) and len(seen) > 5
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled), torch.no_grad():
        occlusion(observed(net, 10, None, token), x, target, P)


def test_the_explain_pipeline_runs_incremental_by_default_and_records_it():
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    result = explain(
        sample.scan,
        resolve_model("lesion-classifier"),
        "occlusion",
        target="lesion",
        params={"window": 16, "stride": 16},
    )
    run = result.provenance["method_run"]["occlusion"]
    assert result.params["strategy"] == "auto" and run["strategy"] == "incremental"  # auto: on a CPU
    assert isinstance(run["full_from"], dict)
    assert not any("full occlusion instead" in w for w in result.warnings)


class SpatialBias(nn.Module):
    """A constant that varies along x, added after a convolution: not a local operation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.register_buffer("ramp", torch.linspace(-1, 1, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x) + self.ramp) * 1.5
        return y.mean(dim=(2, 3, 4))


def test_an_operation_broadcast_along_space_runs_in_full_and_stays_exact():
    net = SpatialBias().eval()
    x = torch.randn(1, 1, 16, 16, 16)
    info: dict = {}
    with torch.no_grad():
        _same_map(occlusion(net, x, 1, P, info=info), _captum(net, x, 1, 8, 4))
    assert "add" in info["full_from"]


def test_windows_already_at_the_baseline_are_scored_zero_without_a_pass():
    """A zero background with a zero baseline (air in a windowed CT): those windows change
    nothing, so their drop is exactly 0; the map is still Captum's and the others are run."""
    net, target = _nets()["small_cnn"]
    net.eval()
    torch.manual_seed(2)
    x = torch.zeros(1, 1, 24, 24, 24)
    x[..., 8:16, 6:18, 9:15] = torch.rand(8, 12, 6) + 0.5
    info: dict = {}
    with torch.no_grad():
        ours = occlusion(net, x, target, {**P, "stride": 4}, info=info)
        theirs = _captum(net, x, target, P["window"], 4)
    _same_map(ours, theirs)
    total = occlusion_windows((24, 24, 24), P["window"], 4)
    assert 0 < info["unchanged_windows"] < total
    # the windows that touch the object are exactly the ones run
    starts = [range(0, 24 - P["window"] + 1, 4)] * 3
    touching = sum(
        bool(x[0, 0, a : a + P["window"], b : b + P["window"], c : c + P["window"]].any())
        for a in starts[0]
        for b in starts[1]
        for c in starts[2]
    )
    assert info["unchanged_windows"] == total - touching
