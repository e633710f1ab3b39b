"""explain() as a pipeline: arguments checked before the cache, methods as registered classes."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mlmi_interp.errors import InputError, MlmiError
from napari_mlmi_interp.explain import METHODS, ResultCache, explain, get_method, list_methods, resolve_params
from napari_mlmi_interp.explain.convergence import convergence_warning
from napari_mlmi_interp.explain.explanation import cache_entry_key
from napari_mlmi_interp.explain.methods import METHOD_CLASSES, Method
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.models import ModelSpec, load_model
from napari_mlmi_interp.models.predict import preprocessor_for

EXPLAIN = Path(__file__).resolve().parents[1] / "napari_mlmi_interp" / "explain"


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


class Seg(torch.nn.Module):
    def forward(self, x):  # class-1 logit at each voxel = the voxel's value
        return torch.cat([torch.zeros_like(x), x], dim=1)


def _model(task: str = "classification"):
    torch.manual_seed(0)
    spec = {"name": "tiny", "task": task, "classes": ["a", "b"], "normalization": {"kind": "none"}}
    return load_model(
        ModelSpec.from_dict(spec), module=(TinyCNN() if task == "classification" else Seg()).eval()
    )


def _volume() -> Volume:
    rng = np.random.default_rng(1)
    return Volume(rng.normal(size=(8, 9, 10)).astype(np.float32), Geometry((8, 9, 10), (1, 1, 1), (0, 0, 0)))


def _plant(cache, vol, model, method, good_key, **request) -> None:
    """Store the good result under the key the (bad) ``request`` would look up."""
    mi = preprocessor_for(model).forward(vol)
    m = get_method(method)
    params = resolve_params(m, request.get("params"))
    key = cache_entry_key(
        vol,
        model,
        mi,
        m.name,
        params,
        request.get("target"),
        request.get("roi"),
        "sum",
        request.get("region"),
    )
    arrays, meta = cache.get(good_key)
    cache.put(key, arrays, meta)


def test_bad_arguments_raise_the_same_error_whether_or_not_a_result_is_cached(tmp_path):
    model, vol = _model(), _volume()
    cache = ResultCache(tmp_path / "cache")
    first = explain(vol, model, "saliency", target=1, cache=cache)
    (entry,) = cache.entries()
    assert explain(vol, model, "saliency", target=1, cache=cache).provenance["cache"] == "hit"
    hits = cache.hits

    # tuning is not part of the key: the stored map must not answer a bad tuning
    with pytest.raises(InputError, match="tuning must be 'auto' or 'off', got 'fast'"):
        explain(vol, model, "saliency", target=1, cache=cache, tuning="fast")
    assert cache.hits == hits  # refused before the lookup

    # a region for a method it cannot restrict, and a region on another grid
    region = np.zeros(vol.shape, bool)
    region[2:5, 2:5, 2:5] = True
    _plant(cache, vol, model, "saliency", entry.name, target=1, region=region)
    with pytest.raises(InputError, match="a region restricts occlusion only, not Saliency"):
        explain(vol, model, "saliency", target=1, cache=cache, region=region)
    wrong = np.ones((4, 4, 4), bool)
    _plant(cache, vol, model, "occlusion", entry.name, target=1, region=wrong)
    with pytest.raises(InputError, match=r"region shape \(4, 4, 4\) does not match the scan \(8, 9, 10\)"):
        explain(vol, model, "occlusion", target=1, cache=cache, region=wrong)

    # a parameter value the method cannot run
    bad = {"strategy": "sideways"}
    _plant(cache, vol, model, "occlusion", entry.name, target=1, params=bad)
    with pytest.raises(InputError, match="strategy must be one of auto, incremental, full, coarse_to_fine"):
        explain(vol, model, "occlusion", target=1, cache=cache, params=bad)
    assert cache.hits == hits + 1 + 1 + 1  # only the plants' own reads
    assert first.provenance.get("cache") is None


def test_a_bad_roi_raises_even_when_a_result_is_cached(tmp_path):
    model, vol = _model("segmentation"), _volume()
    cache = ResultCache(tmp_path / "cache")
    roi = np.zeros(vol.shape, np.uint8)
    roi[3:6, 3:6, 3:6] = 1
    explain(vol, model, "saliency", roi=roi, cache=cache)
    (entry,) = cache.entries()
    wrong = np.ones((8, 9), np.uint8)
    _plant(cache, vol, model, "saliency", entry.name, roi=wrong)
    with pytest.raises(InputError, match=r"roi shape \(8, 9\) does not match the scan"):
        explain(vol, model, "saliency", roi=wrong, cache=cache)
    with pytest.raises(InputError, match="roi_reduce must be 'sum' or 'mean'"):
        explain(vol, model, "saliency", roi=roi, roi_reduce="median", cache=cache)


def test_the_registry_is_built_from_one_class_per_method():
    def concrete(cls):
        for sub in cls.__subclasses__():
            yield from concrete(sub)
            if not getattr(sub, "__abstractmethods__", None):
                yield sub

    assert set(concrete(Method)) == set(METHOD_CLASSES)
    assert len(METHODS) == len(METHOD_CLASSES) == 13
    for cls in METHOD_CLASSES:
        m = METHODS[cls.name]
        assert type(m) is cls and get_method(cls.name) is m
        assert m.title and m.description and m.elements and m.family
        fwd, bwd = m.cost(dict(m.params), (16, 16, 16))
        assert fwd >= 1 and bwd >= 0
        if m.batch_param is not None:
            assert m.params[m.batch_param] == "auto"
    assert [m.name for m in list_methods(elements=("physical_attribution",))] == [
        "input_x_gradient",
        "feature_ablation",
    ]


def test_no_method_is_chosen_by_comparing_its_name():
    """No ``if name == "..."`` switch in explain/: a method's behaviour lives on its class."""
    found = []
    for path in sorted(EXPLAIN.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.In) for op in node.ops):
                sides = [node.left, *node.comparators]
                named = any(
                    (isinstance(s, ast.Name) and s.id in ("name", "method"))
                    or (isinstance(s, ast.Attribute) and s.attr == "name")
                    for s in sides
                )
                literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides)
                literal |= any(isinstance(s, ast.Tuple | ast.Set) for s in sides)
                if named and literal:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found


def test_user_errors_are_mlmi_errors_and_still_value_errors():
    model, vol = _model(), _volume()
    for call in (
        lambda: get_method("gradcam++"),
        lambda: list_methods(elements=("beauty",)),
        lambda: explain(vol, model, "saliency", target="c"),
        lambda: explain(vol, model, "gradcam", target=1),  # no cam_layers in the spec
        lambda: explain(vol, model, "integrated_gradients", params={"steps": 3}),
    ):
        with pytest.raises(MlmiError) as info:
            call()
        assert isinstance(info.value, ValueError)


def test_completeness_advice_comes_from_the_method():
    ig, dl = get_method("integrated_gradients"), get_method("deeplift")
    for m in (ig, dl):
        by_name = convergence_warning(m.name, {"n_steps": 8}, 0.5, 2.0, 1.0)
        assert by_name == convergence_warning(m, {"n_steps": 8}, 0.5, 2.0, 1.0)
    assert "raise n_steps from 8 to" in convergence_warning(ig, {"n_steps": 8}, 0.5, 2.0, 1.0)
    assert "DeepLIFT's map misses completeness" in convergence_warning(dl, {}, 0.5, 2.0, 1.0)
    assert convergence_warning(get_method("smoothgrad"), {}, 0.5, 2.0, 1.0) is None


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("smoothgrad", {"nt_samples": 0}, "nt_samples must be a whole number >= 1, got 0"),
        ("gradient_shap", {"n_samples": 0}, "n_samples must be a whole number >= 1"),
        ("gradient_shap", {"stdevs": -0.1}, "stdevs must be a number >= 0"),
        ("integrated_gradients", {"n_steps": 0}, "n_steps must be a whole number >= 1"),
        ("integrated_gradients", {"n_steps": True}, "n_steps must be a whole number >= 1"),
        ("integrated_gradients", {"method": "simpson"}, "method must be one of gausslegendre"),
        ("integrated_gradients", {"internal_batch_size": 0}, "internal_batch_size must be a whole number"),
        ("feature_ablation", {"n_segments": 0}, "n_segments must be a whole number >= 1"),
    ],
)
def test_parameter_values_that_cannot_run_are_user_errors(method, params, message):
    """Before: Captum's AssertionError or a ZeroDivisionError (an "internal error" in the CLI)."""
    m = get_method(method)
    with pytest.raises(InputError, match=message):
        m.check(resolve_params(m, params))
    m.check(resolve_params(m, None))  # the defaults pass
    m.check(resolve_params(m, {k: 2 for k in m.counts}))
