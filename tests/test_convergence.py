"""Completeness warnings: a map that does not add up to F(x) - F(baseline) says so, with a fix."""

from __future__ import annotations

import re

import captum.attr as ca
import numpy as np
import pytest
import torch

from napari_mlmi_interp.explain import ResultCache, explain
from napari_mlmi_interp.explain.convergence import CONVERGENCE_TOLERANCE, convergence_warning, suggested_steps
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.models import ModelSpec, load_model


class SteepStep(torch.nn.Module):
    """Score = 10 sigmoid(20 (mean(x) - 0.5)): along the path from 0 to x (mean 1) the score
    jumps at alpha = 0.5, between the two Gauss-Legendre nodes of a 2-step integral (0.21, 0.79),
    where the gradient is almost 0, so 2 steps miss nearly all of F(x) - F(0). The sigmoid is
    functional, outside any module DeepLIFT could rescale."""

    def forward(self, x):
        s = x.mean(dim=(1, 2, 3, 4))
        g = 10 * torch.sigmoid(20 * (s - 0.5))
        return torch.stack([-g, g], dim=1)


class Linear(torch.nn.Module):
    """Score = w . x + b: the gradient is constant, so any number of steps is exact."""

    def __init__(self, shape):
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.w = torch.nn.Parameter(torch.randn(2, *shape, generator=gen))
        self.b = torch.nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x):
        return torch.einsum("bczyx,kzyx->bk", x, self.w) + self.b


def _model(net):
    spec = ModelSpec.from_dict(
        {"name": "tiny", "task": "classification", "classes": ["a", "b"], "normalization": {"kind": "none"}}
    )
    return load_model(spec, module=net.eval())


@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(0)
    array = (1.0 + 0.05 * rng.standard_normal((6, 7, 8))).astype(np.float32)
    return Volume(array, Geometry((6, 7, 8), (1, 1, 1), (0, 0, 0)), modality="MR")


def _captum_ig(net, x, n_steps):
    """Captum's own IG and convergence delta, outside the plugin."""
    _, delta = ca.IntegratedGradients(net).attribute(
        x, baselines=torch.zeros_like(x), target=1, n_steps=n_steps, return_convergence_delta=True
    )
    return float(delta.abs().max())


def test_two_step_integrated_gradients_warns_with_the_relative_delta_and_a_working_fix(scan):
    net = SteepStep()
    model = _model(net)
    result = explain(scan, model, "integrated_gradients", target=1, params={"n_steps": 2})
    # the scores, computed here independently of the plugin
    x = torch.from_numpy(scan.array)[None, None]
    with torch.no_grad():
        fx, f0 = float(net(x)[0, 1]), float(net(torch.zeros_like(x))[0, 1])
    comp = result.provenance["completeness"]
    assert comp["score_input"] == pytest.approx(fx, rel=1e-6)
    assert comp["score_baseline"] == pytest.approx(f0, rel=1e-6)
    # the delta is Captum's, the share is delta / |F(x) - F(0)|
    captum_delta = _captum_ig(net, x, 2)
    assert result.convergence_delta == pytest.approx(captum_delta, rel=1e-4)
    share = captum_delta / abs(fx - f0)
    assert share > 0.5  # the construction: 2 steps miss most of the jump
    assert comp["relative_delta"] == pytest.approx(share, rel=1e-4)
    [warning] = [w for w in result.warnings if "Integrated Gradients" in w]
    assert f"{100 * share:.0f} %" in warning
    n_new = int(re.search(r"raise n_steps from 2 to (\d+)", warning).group(1))
    assert n_new > 2
    # following the advice gives a map that converges, by Captum's own measure
    assert _captum_ig(net, x, n_new) / abs(fx - f0) <= CONVERGENCE_TOLERANCE
    again = explain(scan, model, "integrated_gradients", target=1, params={"n_steps": n_new})
    assert not any("Integrated Gradients" in w for w in again.warnings)
    # the warning is part of the summary (the batch sidecar and the CLI's JSON)
    assert warning in result.summary()["warnings"]


def test_many_steps_on_a_linear_model_give_no_warning(scan):
    net = Linear(scan.shape)
    result = explain(scan, _model(net), "integrated_gradients", target=1, params={"n_steps": 64})
    x = torch.from_numpy(scan.array)[None, None]
    assert result.convergence_delta == pytest.approx(_captum_ig(net, x, 64), abs=1e-4)
    assert result.provenance["completeness"]["relative_delta"] < 1e-4
    assert result.warnings == []


def test_deeplift_through_a_functional_sigmoid_warns(scan):
    result = explain(scan, _model(SteepStep()), "deeplift", target=1)
    assert any(w.startswith("DeepLIFT's map misses completeness") for w in result.warnings)
    assert not explain(scan, _model(Linear(scan.shape)), "deeplift", target=1).warnings


def test_a_cache_hit_returns_the_same_warnings(tmp_path, scan):
    cache = ResultCache(tmp_path / "cache")
    model = _model(SteepStep())
    first = explain(scan, model, "integrated_gradients", params={"n_steps": 2}, cache=cache)
    second = explain(scan, model, "integrated_gradients", params={"n_steps": 2}, cache=cache)
    assert second.provenance["cache"] == "hit"
    assert first.warnings and second.warnings == first.warnings
    assert second.summary()["warnings"] == first.summary()["warnings"]


def test_methods_without_completeness_are_not_checked(scan):
    for method, params in (("saliency", {}), ("smoothgrad", {"nt_samples": 2})):
        result = explain(scan, _model(SteepStep()), method, target=1, params=params)
        assert result.warnings == [] and "completeness" not in result.provenance


@pytest.mark.parametrize(
    ("n", "rel", "expected"),
    [(8, 0.86, 144), (2, 0.06, 8), (32, 0.051, 64), (4, 10.0, 800)],
)
def test_suggested_steps_assume_the_error_falls_as_one_over_n(n, rel, expected):
    # ceil(n * rel / 0.05), at least 2 n, rounded up to a multiple of 8
    assert suggested_steps(n, rel) == expected


def test_equal_scores_at_input_and_baseline_ask_for_another_baseline():
    text = convergence_warning("integrated_gradients", {"n_steps": 32, "baseline": 0.0}, 0.0, 1.5, 1.5)
    assert text is not None and "another baseline" in text and "F(x) = 1.5" in text
    assert convergence_warning("integrated_gradients", {"n_steps": 32}, 0.049, 2.0, 1.0) is None
    assert "from 32 to 64" in convergence_warning("integrated_gradients", {"n_steps": 32}, 0.051, 2.0, 1.0)
    assert convergence_warning("gradient_shap", {}, 5.0, 2.0, 1.0) is None


@pytest.mark.gui
def test_the_explain_panel_shows_the_warnings_in_its_status_and_a_notification(viewer_with_sample, widgets):
    from napari.utils.notifications import notification_manager

    from napari_mlmi_interp._widgets import ExplainWidget
    from napari_mlmi_interp.sample import make_sample

    viewer, _scan, _mask = viewer_with_sample
    widget = ExplainWidget(viewer)
    widgets.append(widget)
    result = explain(make_sample().scan, _model(SteepStep()), "integrated_gradients", params={"n_steps": 2})
    [warning] = result.warnings
    seen = len(notification_manager.records)
    widget.show_result(result)
    assert warning in widget.status.text()
    new = notification_manager.records[seen:]
    assert any(warning in str(n.message) and n.severity == "warning" for n in new)


class InstanceNormNet(torch.nn.Module):
    """Conv -> InstanceNorm3d: the score hardly depends on the input's scale."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.norm = torch.nn.InstanceNorm3d(4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3, 4)))


def test_a_model_normalising_each_input_is_named_in_the_advice(scan):
    result = explain(scan, _model(InstanceNormNet()), "integrated_gradients", target=1, params={"n_steps": 2})
    [warning] = result.warnings
    assert "normalises each input (InstanceNorm3d)" in warning and "GradientSHAP" in warning
    # a model with BatchNorm in eval mode (a fixed affine map) is not named
    net = torch.nn.Sequential(torch.nn.BatchNorm3d(1), SteepStep()).eval()
    [plain] = explain(scan, _model(net), "integrated_gradients", target=1, params={"n_steps": 2}).warnings
    assert "raise n_steps from 2 to" in plain and "normalises" not in plain


def test_the_demo_segmenter_with_eight_steps_is_flagged():
    """The case that went unflagged (issue #13): IG with 8 steps on a real segmenter."""
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.sample import make_sample

    result = explain(
        make_sample().scan, resolve_model("lesion-segmenter"), "integrated_gradients", params={"n_steps": 8}
    )
    comp = result.provenance["completeness"]
    share = result.convergence_delta / abs(comp["score_input"] - comp["score_baseline"])
    assert share > CONVERGENCE_TOLERANCE
    [warning] = [w for w in result.warnings if w.startswith("Integrated Gradients")]
    assert f"{100 * share:.0f} %" in warning and "InstanceNorm3d" in warning
