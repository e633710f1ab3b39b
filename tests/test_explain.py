"""Attributions: identical to bare Captum, mapped to the right place, cancellable, reported."""

from __future__ import annotations

import json
import threading
import time

import captum.attr as ca
import numpy as np
import pytest
import torch
from skimage.segmentation import slic

from napari_mlmi_interp.explain import METHODS, Cancelled, CancelToken, explain, get_method
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.models import ModelSpec, load_model

AXIAL = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)


class SmallCNN(torch.nn.Module):
    """ReLU modules (for guided backprop / DeepLIFT) and a named layer (for CAM methods)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv3d(1, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool3d(2),
            torch.nn.Conv3d(4, 6, 3, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.features(x).amax(dim=(2, 3, 4)))


def _identity_spec(**kw):
    return ModelSpec.from_dict(
        {
            "name": "small",
            "task": "classification",
            "classes": ["a", "b"],
            "normalization": {"kind": "none"},
            "cam_layers": ["features.4"],
            **kw,
        }
    )


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    model = load_model(_identity_spec(), module=net)
    rng = np.random.default_rng(0)
    vol = Volume(
        rng.normal(size=(12, 14, 16)).astype(np.float32), Geometry((12, 14, 16), (1, 1, 1), (0, 0, 0))
    )
    return model, vol


FAST = {
    "integrated_gradients": {"n_steps": 6},
    "smoothgrad": {"nt_samples": 4, "nt_samples_batch_size": 2},
    "gradient_shap": {"n_samples": 4},
    "occlusion": {"window": 4, "stride": 4, "perturbations_per_eval": 4},
    "feature_ablation": {"n_segments": 12},
}


def _bare_captum(name, net, x, target, p):
    """The same attribution, called on Captum directly."""
    layer = net.features[4]
    if name == "saliency":
        return ca.Saliency(net).attribute(x, target=target, abs=p["abs"])
    if name == "input_x_gradient":
        return ca.InputXGradient(net).attribute(x, target=target)
    if name == "integrated_gradients":
        return ca.IntegratedGradients(net).attribute(
            x,
            baselines=torch.zeros_like(x),
            target=target,
            n_steps=p["n_steps"],
            method=p["method"],
            internal_batch_size=p["internal_batch_size"],
        )
    if name == "smoothgrad":
        sigma = p["stdevs"] * float(x.max() - x.min())
        return ca.NoiseTunnel(ca.Saliency(net)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=p["nt_samples"],
            nt_samples_batch_size=p["nt_samples_batch_size"],
            stdevs=sigma,
            target=target,
        )
    if name == "gradient_shap":
        return ca.GradientShap(net).attribute(
            x,
            baselines=torch.cat([torch.zeros_like(x), x]),
            n_samples=p["n_samples"],
            stdevs=p["stdevs"],
            target=target,
        )
    if name == "deeplift":
        return ca.DeepLift(net).attribute(x, baselines=torch.zeros_like(x), target=target)
    if name == "guided_backprop":
        return ca.GuidedBackprop(net).attribute(x, target=target)
    if name == "deconvolution":
        return ca.Deconvolution(net).attribute(x, target=target)
    if name == "gradcam":
        cam = ca.LayerGradCam(net, layer).attribute(x, target=target, relu_attributions=True)
        return ca.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")
    if name == "guided_gradcam":
        return ca.GuidedGradCam(net, layer).attribute(x, target=target, interpolate_mode="trilinear")
    if name == "occlusion":
        w, s = p["window"], p["stride"]
        return ca.Occlusion(net).attribute(
            x,
            sliding_window_shapes=(1, w, w, w),
            strides=(1, s, s, s),
            baselines=0.0,
            target=target,
            perturbations_per_eval=p["perturbations_per_eval"],
        )
    if name == "feature_ablation":
        # SLIC called directly (not the plugin's wrapper), with the parameters as run
        mask = _slic_segments(x[0, 0].numpy(), p["n_segments"], p["compactness"])
        mask = torch.from_numpy(mask).long()[None, None]
        return ca.FeatureAblation(net).attribute(
            x,
            baselines=0.0,
            target=target,
            feature_mask=mask,
            perturbations_per_eval=p["perturbations_per_eval"],
        )
    raise AssertionError(name)


def _slic_segments(image: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """scikit-image's SLIC on a 3D grey image, labels from 0 (as the method documents)."""
    return slic(
        image, n_segments=int(n_segments), compactness=float(compactness), channel_axis=None, start_label=0
    )


#: Captum has no Grad-CAM++: it is checked against a hand computation instead (below).
BY_HAND = {"gradcam_pp"}
BARE_CAPTUM = [name for name in METHODS if name not in BY_HAND]


@pytest.mark.parametrize("name", BARE_CAPTUM)
def test_model_grid_map_equals_bare_captum(small, name):
    model, vol = small
    params = FAST.get(name, {})
    result = explain(vol, model, name, target=1, params=params)
    p = result.params  # as run: "auto" batch sizes resolved (occlusion's strategy: in the provenance)
    assert "auto" not in [v for k, v in p.items() if k != "strategy"]
    x = torch.from_numpy(vol.array)[None, None]
    if "seed" in p:  # Captum's noise and random baselines come from torch's and numpy's RNGs
        torch.manual_seed(p["seed"])
        np.random.seed(p["seed"])  # noqa: NPY002 - Captum reads the global numpy RNG
    expected = _bare_captum(name, model.module, x, 1, p).detach()[0].sum(0).numpy()
    scale = max(1e-12, np.abs(expected).max())
    if name == "occlusion":  # incremental: each score recomputed its own way, float32 roundoff only
        assert (
            p["strategy"] == "auto"
            and result.provenance["method_run"]["occlusion"]["strategy"] == "incremental"
        )
        np.testing.assert_allclose(
            result.model_map, expected, rtol=0, atol=1e-4 * (expected.max() - expected.min())
        )
    else:
        np.testing.assert_allclose(result.model_map, expected, rtol=1e-5, atol=1e-7 * scale)
    # identity preprocessing: the native map is the model-grid map, in the scan's geometry
    assert result.native.geometry is vol.geometry
    native_atol = 1e-4 * (expected.max() - expected.min()) if name == "occlusion" else 1e-6 * scale
    np.testing.assert_allclose(result.native.array, expected, rtol=1e-5, atol=native_atol)
    assert result.signed == get_method(name).signed


def test_occlusion_runs_a_channels_last_copy_with_the_same_map(small):
    model, vol = small
    params = FAST["occlusion"]
    tuned = explain(vol, model, "occlusion", target=1, params=params)
    plain = explain(vol, model, "occlusion", target=1, params=params, tuning="off")
    assert tuned.provenance["tuning"] == "channels_last_3d" and plain.provenance["tuning"] == "none"
    np.testing.assert_allclose(
        tuned.model_map, plain.model_map, rtol=1e-5, atol=1e-7 * np.abs(plain.model_map).max()
    )
    # the user's module is untouched (a copy runs channels-last)
    conv = next(m for m in model.module.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous()
    # autograd-only gradient methods run a copy with the stem's faster backward; hooked ones as given
    assert explain(vol, model, "saliency", target=1).provenance["tuning"] == "input_gradient_copy"
    assert explain(vol, model, "guided_backprop", target=1).provenance["tuning"] == "none"
    assert explain(vol, model, "saliency", target=1, tuning="off").provenance["tuning"] == "none"
    with pytest.raises(ValueError, match="tuning must be"):
        explain(vol, model, "occlusion", target=1, params=params, tuning="fast")


def test_plugin_gradcam_map_equals_monai_gradcam():
    """The plugin's Grad-CAM map, through ``explain()``, against MONAI's ``GradCAM`` on the same
    trained model, layer and class: equal within 1e-5 of the map's maximum.

    The preprocessing is the identity (the input is the demo model's prepared sample), so the
    plugin's native map is its model-grid map. MONAI's map is taken with its own trilinear
    upsampler and no post-processing (its default normaliser flips the scale: min -> 1).
    """
    from monai.visualize import GradCAM

    from napari_mlmi_interp.models import builtin_models, preprocessor_for
    from napari_mlmi_interp.sample import make_sample

    spec = next(s for s in builtin_models() if s.name == "lesion-classifier")
    trained = load_model(spec)
    prepared = preprocessor_for(trained).forward(make_sample().scan).array[0]  # (z, y, x) model input
    identity = ModelSpec.from_dict(
        {
            "name": "lesion-classifier-identity",
            "task": "classification",
            "classes": list(spec.classes),
            "normalization": {"kind": "none"},
            "cam_layers": list(spec.cam_layers),
        }
    )
    model = load_model(identity, module=trained.module)
    vol = Volume(np.ascontiguousarray(prepared, np.float32), Geometry(prepared.shape, (3, 3, 3), (0, 0, 0)))
    result = explain(vol, model, "gradcam", target="lesion")
    assert result.target == {"kind": "class", "index": 1, "name": "lesion"}
    x = torch.from_numpy(vol.array)[None, None]
    cam = GradCAM(nn_module=trained.module, target_layers=spec.cam_layers[0], postprocessing=lambda m: m)
    monai_map = cam(x, class_idx=1).detach()[0, 0].numpy()
    plugin_map = result.native.array
    assert plugin_map.shape == monai_map.shape == vol.shape
    assert monai_map.max() > 0 and np.count_nonzero(monai_map) > 0.01 * monai_map.size
    np.testing.assert_allclose(plugin_map, monai_map, rtol=0, atol=1e-5 * monai_map.max())
    assert np.unravel_index(plugin_map.argmax(), vol.shape) == np.unravel_index(monai_map.argmax(), vol.shape)


class TinyCamNet(torch.nn.Module):
    """conv -> ReLU (the CAM layer, ``act``) -> a linear head over every activation.

    The score is linear in the layer's activations ``A``, so its gradient is known without
    autograd: ``dS_t / dA = W[t]`` (the head's row, reshaped to ``A``'s shape).
    """

    def __init__(self, shape):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.head = torch.nn.Linear(2 * int(np.prod(shape)), 2)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))


def test_gradcam_pp_equals_the_papers_formula_computed_by_hand():
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with ``Y = exp(S)``) on a tiny input, by hand.

    ``alpha = d2Y / (2 d2Y + sum(A) d3Y)``, ``w_k = sum(alpha relu(dY))``, map ``relu(sum_k w_k A_k)``,
    with the derivatives of ``Y = exp(S)`` taken elementwise by autograd in float64. The plugin
    drops the common factor ``exp(S)`` of the weights (as pytorch-grad-cam does), so its map is
    the paper's divided by ``exp(S)``. The closed form from the known gradient gives the same map.
    """
    shape = (3, 4, 5)
    torch.manual_seed(3)
    net = TinyCamNet(shape).eval()
    with torch.no_grad():
        net.head.weight.mul_(0.5)  # keeps exp(S) moderate
    spec = _identity_spec(cam_layers=["act"])
    model = load_model(spec, module=net)
    rng = np.random.default_rng(3)
    vol = Volume(rng.normal(size=shape).astype(np.float32), Geometry(shape, (1, 1, 1), (0, 0, 0)))
    target = 1
    result = explain(vol, model, "gradcam_pp", target=target)

    # the paper's definition, derivatives of exp(S) by autograd (float64, independent of Captum)
    net64 = TinyCamNet(shape).double()
    net64.load_state_dict(net.state_dict())
    x = torch.from_numpy(vol.array.astype(np.float64))[None, None]
    with torch.no_grad():
        acts = net64.act(net64.conv(x))[0]  # (2, *shape)
    a = acts.clone().requires_grad_(True)
    score = net64.head(a.flatten()[None])[0, target]
    y = torch.exp(score)
    (d1,) = torch.autograd.grad(y, a, create_graph=True)
    d1f, af = d1.flatten(), a.flatten()
    d2 = torch.empty_like(af)
    d3 = torch.empty_like(af)
    for k in range(af.numel()):
        (g2,) = torch.autograd.grad(d1f[k], a, create_graph=True)
        d2[k] = g2.flatten()[k]
        (g3,) = torch.autograd.grad(g2.flatten()[k], a, retain_graph=True)
        d3[k] = g3.flatten()[k]
    d1n = d1.detach().numpy()
    d2n, d3n = d2.detach().numpy().reshape(d1n.shape), d3.detach().numpy().reshape(d1n.shape)
    an = acts.numpy()
    sum_a = an.sum(axis=(1, 2, 3), keepdims=True)
    denom = 2 * d2n + sum_a * d3n
    alpha = np.divide(d2n, denom, out=np.zeros_like(d2n), where=denom != 0)
    weights = (alpha * np.maximum(d1n, 0)).sum(axis=(1, 2, 3))
    paper = np.maximum((weights[:, None, None, None] * an).sum(0), 0) / float(y.detach())

    # the closed form from the known gradient g = W[target] (no autograd at all)
    g = net64.head.weight.detach().numpy()[target].reshape(an.shape)
    alpha_c = g**2 / (2 * g**2 + sum_a * g**3)
    closed = np.maximum(
        (((alpha_c * np.maximum(g, 0)).sum(axis=(1, 2, 3)))[:, None, None, None] * an).sum(0), 0
    )
    np.testing.assert_allclose(paper, closed, rtol=1e-9, atol=1e-12)

    # the layer has the input's grid: the plugin's trilinear upsampling is the identity here
    assert paper.max() > 0 and np.count_nonzero(paper) > 5
    np.testing.assert_allclose(result.native.array, paper, rtol=1e-5, atol=1e-6 * paper.max())
    # and Grad-CAM++ is not Grad-CAM on this input (the test tells them apart)
    plain = explain(vol, model, "gradcam", target=target).native.array
    assert not np.allclose(plain / plain.max(), paper / paper.max(), atol=1e-2)


@pytest.mark.parametrize("kind", ["linear", "cnn"])
def test_supervoxel_ablation_equals_score_drops_computed_by_hand(small, kind):
    """Each SLIC segment (scikit-image called directly, same parameters) set to the baseline:
    the score drop, on every voxel of that segment. Linear model: the drop is known in closed
    form (sum of weight x value over the segment); CNN: one forward pass per segment."""
    _, vol = small
    params = {"n_segments": 12, "compactness": 0.1, "baseline": 0.0}
    if kind == "linear":
        centre = (5, 6, 9)
        net = BlobModel(vol.shape, centre).eval()
    else:
        torch.manual_seed(0)
        net = SmallCNN().eval()
    model = load_model(_identity_spec(), module=net)
    result = explain(vol, model, "feature_ablation", target=1, params=params)
    labels = _slic_segments(vol.array, params["n_segments"], params["compactness"])
    assert 4 <= len(np.unique(labels)) <= 3 * params["n_segments"]
    expected = np.zeros(vol.shape)
    if kind == "linear":
        w = net.w.numpy().astype(np.float64)
        for label in np.unique(labels):
            inside = labels == label
            expected[inside] = (w * vol.array)[inside].sum()  # s(x) - s(x with the segment at 0)
    else:
        with torch.no_grad():
            x = torch.from_numpy(vol.array)[None, None]
            full = float(net(x)[0, 1])
            for label in np.unique(labels):
                ablated = vol.array.copy()
                ablated[labels == label] = params["baseline"]
                expected[labels == label] = full - float(net(torch.from_numpy(ablated)[None, None])[0, 1])
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(result.native.array, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


class BlobModel(torch.nn.Module):
    """Score = input weighted by a Gaussian blob at a known model-grid voxel: saliency = blob."""

    def __init__(self, shape, centre):
        super().__init__()
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
        blob = np.exp(-((grid - np.asarray(centre)) ** 2).sum(-1) / (2 * 1.2**2))
        self.register_buffer("w", torch.from_numpy(blob.astype(np.float32)))

    def forward(self, x):
        s = (x[:, 0] * self.w).flatten(1).sum(1, keepdim=True)
        return torch.cat([-s, s], dim=1)


def test_native_map_peaks_at_the_physical_point_on_an_oblique_anisotropic_scan():
    a = np.radians(20.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]) @ AXIAL
    native = Geometry((30, 60, 52), (4.0, 0.9, 1.1), (-20.0, -25.0, 5.0), rot)
    spec = _identity_spec(input={"spacing_mm": [2.0, 2.0, 2.0], "size": [32, 32, 32], "orientation": "RAS"})
    from napari_mlmi_interp.models import Preprocessor

    grid = Preprocessor(spec.input).grid_for(native)
    centre = (18, 13, 15)
    model = load_model(spec, module=BlobModel(grid.shape, centre))
    vol = Volume(np.ones(native.shape, np.float32), native)
    result = explain(vol, model, "saliency", target=1)
    assert result.model_grid.same_grid(grid)
    expected = grid.to_lps(centre)
    error = np.linalg.norm(result.peak_lps() - expected)
    assert error <= max(native.spacing), f"peak {error:.2f} mm from the responsive point"


def test_cancel_from_another_thread_stops_integrated_gradients_within_one_batch(small):
    """Cancelled from the main thread mid-run: at most the batch in flight is finished, then
    :class:`Cancelled`. Counted in samples, not seconds (the latency is in benchmarks/gui.py)."""
    model, vol = small
    batch = 2
    token, seen, state = CancelToken(), [], {}
    lock, started = threading.Lock(), threading.Event()

    def progress(done, total):
        with lock:
            seen.append((done, total))
        if done >= 4:
            started.set()

    def run():
        try:
            explain(
                vol,
                model,
                "integrated_gradients",
                # far more steps than run before the cancel; trapezoid steps, since Captum's
                # Gauss-Legendre nodes cost O(n_steps^3) before the first batch
                params={"n_steps": 100_000, "method": "riemann_trapezoid", "internal_batch_size": batch},
                progress=progress,
                cancel=token,
            )
        except Cancelled:
            state["cancelled"] = True

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(timeout=600), "no progress from the run"
    with lock:  # no report can land between reading the count and setting the token
        at_cancel = seen[-1][0]
        token.cancel()
    thread.join(timeout=600)
    assert not thread.is_alive() and state.get("cancelled"), "the run was not cancelled"
    assert at_cancel <= seen[-1][0] <= at_cancel + batch  # the batch in flight, no more
    assert seen[-1][1] >= 100_000  # far from the end


def test_progress_is_monotonic_and_reaches_the_total(small):
    model, vol = small
    seen = []
    explain(vol, model, "occlusion", params=FAST["occlusion"], progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1] and len(seen) > 3


def test_clear_errors(small):
    model, vol = small
    with pytest.raises(ValueError, match="integrated_gradients has no parameter n_stpes"):
        explain(vol, model, "integrated_gradients", params={"n_stpes": 3})
    with pytest.raises(ValueError, match="target must be one of the classes"):
        explain(vol, model, "saliency", target="lesion")
    with pytest.raises(ValueError, match="roi_reduce must be 'sum' or 'mean', got 'average'"):
        explain(vol, model, "saliency", roi_reduce="average")
    bare = load_model(
        ModelSpec.from_dict(
            {
                "name": "nocam",
                "task": "classification",
                "classes": ["a", "b"],
                "normalization": {"kind": "none"},
            }
        ),
        module=SmallCNN().eval(),
    )
    with pytest.raises(ValueError, match="Grad-CAM needs a layer: the spec of 'nocam' lists no cam_layers"):
        explain(vol, bare, "gradcam")


def test_segmentation_roi_target_explains_the_logits_inside_the_mask():
    class Seg(torch.nn.Module):
        def forward(self, x):  # class-1 logit at each voxel = the voxel's value
            return torch.cat([torch.zeros_like(x), x], dim=1)

    spec = ModelSpec.from_dict(
        {"name": "seg", "task": "segmentation", "classes": ["bg", "fg"], "normalization": {"kind": "none"}}
    )
    model = load_model(spec, module=Seg())
    g = Geometry((10, 10, 10), (1, 1, 1), (0, 0, 0))
    vol = Volume(np.random.default_rng(0).normal(size=(10, 10, 10)).astype(np.float32), g)
    roi = np.zeros((10, 10, 10), np.uint8)
    roi[2:5, 3:6, 4:8] = 1
    result = explain(vol, model, "saliency", roi=roi)
    assert result.target["kind"] == "roi" and result.target["roi_voxels"] == roi.sum()
    # d(sum of logits in ROI)/d(input) is 1 inside the ROI and 0 outside
    np.testing.assert_array_equal(result.native.array > 0.5, roi > 0)


def test_methods_and_explain_cli(tmp_path, capsys):
    from napari_mlmi_interp.cli import main
    from napari_mlmi_interp.io import load
    from napari_mlmi_interp.sample import write_sample

    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed} == set(METHODS)
    assert all({"name", "family", "elements", "signed"} <= set(m) for m in listed)
    paths = write_sample(tmp_path)
    assert (
        main(
            [
                "explain",
                paths["scan"],
                "--model",
                "lesion-classifier",
                "--method",
                "gradcam",
                "--out",
                str(tmp_path / "out"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    (heat,) = load(out["map"])
    (scan,) = load(paths["scan"])
    assert heat.shape == scan.shape
    np.testing.assert_allclose(heat.index_to_lps, scan.index_to_lps, atol=1e-4)
    from pathlib import Path

    prov = json.loads(Path(out["provenance"]).read_text())
    assert prov["method"] == "gradcam" and len(prov["provenance"]["model"]["sha256"]) == 64
    assert out["prediction"]["predicted"] == "lesion"


# -- cache ------------------------------------------------------------------------------------------
class CountingCNN(SmallCNN):
    calls = 0

    def forward(self, x):
        CountingCNN.calls += 1
        return super().forward(x)


def test_second_identical_call_is_a_cache_hit_without_running_the_model(tmp_path, small):
    from napari_mlmi_interp.explain import ResultCache

    _, vol = small
    torch.manual_seed(0)
    model = load_model(_identity_spec(), module=CountingCNN().eval())
    cache = ResultCache(tmp_path / "cache")
    first = explain(vol, model, "integrated_gradients", params={"n_steps": 6}, cache=cache)
    calls = CountingCNN.calls
    assert calls > 0 and len(cache.entries()) == 1
    second = explain(vol, model, "integrated_gradients", params={"n_steps": 6}, cache=cache)
    assert CountingCNN.calls == calls, "the model ran on a cache hit"
    assert second.provenance["cache"] == "hit" and cache.hits == 1
    np.testing.assert_array_equal(second.native.array, first.native.array)
    np.testing.assert_array_equal(second.model_map, first.model_map)
    assert second.prediction.label == first.prediction.label and second.target == first.target
    assert second.native.geometry is vol.geometry
    # anything that changes the map changes the key
    explain(vol, model, "integrated_gradients", params={"n_steps": 7}, cache=cache)
    explain(vol, model, "integrated_gradients", params={"n_steps": 6}, target=0, cache=cache)
    shifted = Volume(vol.array + 1, vol.geometry)
    explain(shifted, model, "integrated_gradients", params={"n_steps": 6}, cache=cache)
    assert len(cache.entries()) == 4 and cache.hits == 1


def test_cancelled_run_leaves_no_cache_entry(tmp_path, small):
    from napari_mlmi_interp.explain import ResultCache

    model, vol = small
    cache = ResultCache(tmp_path / "cache")
    token = CancelToken()

    def progress(done, total):
        if done >= 4:
            token.cancel()

    with pytest.raises(Cancelled):
        explain(
            vol,
            model,
            "integrated_gradients",
            params={"n_steps": 400, "internal_batch_size": 2},
            progress=progress,
            cancel=token,
            cache=cache,
        )
    assert cache.entries() == [] and not list((tmp_path / "cache").glob(".tmp-*"))


def test_cache_is_bounded_least_recently_used_first(tmp_path, small):
    from napari_mlmi_interp.explain import ResultCache

    model, vol = small
    probe = ResultCache(tmp_path / "probe")
    explain(vol, model, "saliency", cache=probe)
    one = probe.size_bytes()
    cache = ResultCache(tmp_path / "cache", max_bytes=int(2.5 * one))
    explain(vol, model, "saliency", cache=cache)
    time.sleep(0.02)
    explain(vol, model, "input_x_gradient", cache=cache)
    time.sleep(0.02)
    explain(vol, model, "saliency", cache=cache)  # a hit: saliency is now the most recent
    time.sleep(0.02)
    explain(vol, model, "guided_backprop", cache=cache)  # over the bound: the LRU entry goes
    assert len(cache.entries()) == 2 and cache.size_bytes() <= cache.max_bytes
    before = cache.hits
    explain(vol, model, "saliency", cache=cache)
    assert cache.hits == before + 1  # saliency survived; input_x_gradient was evicted


def test_auto_batch_sizes_follow_the_memory_budget(small, monkeypatch):
    from napari_mlmi_interp.explain import budget
    from napari_mlmi_interp.explain.budget import per_sample_bytes

    model, vol = small
    x = torch.from_numpy(vol.array)[None, None]
    sample = per_sample_bytes(model.module, x)
    # conv1 output (4 x 12 x 14 x 16 float32) alone is saved for the backward pass
    assert sample >= 4 * 12 * 14 * 16 * 4
    tight = explain(
        vol, model, "integrated_gradients", params={"n_steps": 20}, memory_budget_mb=1.5 * sample / 1024**2
    )
    monkeypatch.setattr(budget, "CPU_MAX_BATCH", 64)
    roomy = explain(vol, model, "integrated_gradients", params={"n_steps": 20}, memory_budget_mb=1000)
    assert tight.params["internal_batch_size"] == 1
    assert roomy.params["internal_batch_size"] == 20  # capped at n_steps
    assert tight.provenance["memory"]["per_sample_mb"] == pytest.approx(sample / 1024**2, abs=1e-3)
    # the batch size changes the work's grouping, not the map
    np.testing.assert_allclose(tight.model_map, roomy.model_map, rtol=1e-4, atol=1e-7)
    # on a CPU a batch also holds at most CPU_MAX_BATCH samples, whatever the budget
    monkeypatch.setattr(budget, "CPU_MAX_BATCH", 3)
    capped = explain(vol, model, "integrated_gradients", params={"n_steps": 20}, memory_budget_mb=1000)
    assert capped.params["internal_batch_size"] == 3
    # below one sample: refused before anything runs, with both sizes
    from napari_mlmi_interp.explain import MemoryBudgetError

    calls = []
    model.module.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(
        MemoryBudgetError, match=r"needs about [\d.]+ MB per sample .* memory budget of [\d.]+ MB"
    ):
        explain(vol, model, "integrated_gradients", target=0, memory_budget_mb=0.5 * sample / 1024**2)
    assert calls == []  # the measurement was remembered; the model did not run


def test_one_sample_is_measured_by_its_real_peak_too():
    """The saved-tensor count misses workspaces and gradient buffers; the real peak of one
    forward and backward (resident-set high-water mark) is taken when it is larger."""
    from napari_mlmi_interp.explain import budget

    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 1, 3))
    x = torch.randn(1, 1, 48, 48, 48)
    peak = budget._peak_of_one_step(net, x.clone().requires_grad_(True))
    if peak is None:
        pytest.skip("no /proc/self/clear_refs here")
    activation = 8 * 48**3 * 4  # the first conv's output alone: 3.4 MB
    assert peak >= activation
    assert budget.per_sample_bytes(net, x) >= peak * 0.9  # the larger of the two counts


def test_a_model_input_prepared_for_another_spec_is_not_reused(small):
    model, vol = small
    from napari_mlmi_interp.models import InputSpec, Preprocessor

    other = Preprocessor(InputSpec(spacing_mm=(2.0, 2.0, 2.0))).forward(vol)
    result = explain(vol, model, "saliency", model_input=other)
    assert result.model_grid.same_grid(vol.geometry)  # prepared again, for this model


class ConeModel(torch.nn.Module):
    """Score = input weighted by a smooth cone peaking at a known voxel: occlusion sees it."""

    def __init__(self, shape, centre, radius=6.0):
        super().__init__()
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
        d = np.sqrt(((grid - np.asarray(centre)) ** 2).sum(-1))
        self.register_buffer("w", torch.from_numpy(np.clip(1 - d / radius, 0, None).astype(np.float32)))

    def forward(self, x):
        s = (x[:, 0] * self.w).flatten(1).sum(1, keepdim=True)
        return torch.cat([-s, s], dim=1)


@pytest.fixture(scope="module")
def cone():
    shape, centre = (40, 36, 44), (22, 13, 30)
    model = load_model(_identity_spec(), module=ConeModel(shape, centre))
    vol = Volume(np.ones(shape, np.float32), Geometry(shape, (1, 1, 1), (0, 0, 0)))
    return model, vol, centre


def test_occlusion_region_equals_the_full_run_inside_the_region(cone):
    model, vol, _centre = cone
    params = {"window": 4, "stride": 2, "perturbations_per_eval": 16}
    full = explain(vol, model, "occlusion", target=1, params=params)
    region = np.zeros(vol.shape, bool)
    region[18:26, 10:16, 27:33] = True
    seen = []
    restricted = explain(
        vol,
        model,
        "occlusion",
        target=1,
        params=params,
        region=region,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (restricted.provenance["forward_samples"],) * 2  # an exact total, reached
    np.testing.assert_allclose(restricted.native.array[region], full.native.array[region], rtol=1e-5)
    far = np.ones(vol.shape, bool)
    far[10:34, 2:24, 19:41] = False
    assert not restricted.native.array[far].any()
    assert restricted.provenance["forward_samples"] < full.provenance["forward_samples"] / 4
    assert restricted.provenance["region_voxels"] == region.sum()
    with pytest.raises(ValueError, match="a region restricts occlusion only"):
        explain(vol, model, "saliency", target=1, region=region)


def test_occlusion_coarse_to_fine_finds_the_same_peak_with_far_fewer_passes(cone):
    model, vol, centre = cone
    params = {"window": 4, "stride": 2, "perturbations_per_eval": 16}
    full = explain(vol, model, "occlusion", target=1, params=params)
    seen = []
    fast = explain(
        vol,
        model,
        "occlusion",
        target=1,
        params={**params, "strategy": "coarse_to_fine", "refine_fraction": 0.02},
        progress=lambda d, t: seen.append((d, t)),
    )
    peak = np.unravel_index(np.argmax(fast.native.array), vol.shape)
    assert peak == np.unravel_index(np.argmax(full.native.array), vol.shape)
    assert np.linalg.norm(np.subtract(peak, centre)) <= 1.0
    # refined near the peak: equal to the full run there
    near = tuple(slice(c - 1, c + 2) for c in centre)
    np.testing.assert_allclose(fast.native.array[near], full.native.array[near], rtol=1e-5)
    assert fast.provenance["forward_samples"] < full.provenance["forward_samples"] / 3
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] == fast.provenance["forward_samples"]
    # the prediction came from the attribution's own forward pass on the unperturbed input
    np.testing.assert_allclose(fast.prediction.probabilities, full.prediction.probabilities)
    # an approximation says so, and how far off it was measured to be; the exact map says nothing
    assert any("approximates the exact occlusion map" in w and "Spearman" in w for w in fast.warnings)
    assert not any("approximates" in w for w in full.warnings)
    with pytest.raises(ValueError, match="strategy must be one of auto, incremental, full, coarse_to_fine"):
        explain(vol, model, "occlusion", target=1, params={**params, "strategy": "fine"})
