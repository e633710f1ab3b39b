"""Domain warnings: a scan unlike the model's training data is flagged, with both figures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from napari_mlmi_interp.explain import ResultCache, explain
from napari_mlmi_interp.io import Geometry, Volume, load
from napari_mlmi_interp.models import ModelError, ModelSpec, load_model, predict, resolve_model
from napari_mlmi_interp.models.domain import check_domain
from napari_mlmi_interp.models.spec import Domain
from napari_mlmi_interp.sample import make_sample

AXIAL = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # z -> S, y -> P, x -> L
CORONAL = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)  # z -> P


def _spec(domain=None, **input_spec):
    return ModelSpec.from_dict(
        {
            "name": "m",
            "task": "classification",
            "classes": ["a", "b"],
            "input": input_spec,
            "normalization": {"kind": "none"},
            **({"domain": domain} if domain is not None else {}),
        }
    )


def _volume(shape=(8, 10, 12), spacing=(1, 1, 1), direction=AXIAL, *, array=None, modality="MR", **meta):
    g = Geometry(shape, spacing, (0, 0, 0), direction)
    data = np.ones(shape, np.float32) if array is None else array
    return Volume(data, g, modality=modality, metadata=dict(meta))


@pytest.fixture(scope="module")
def phantom(shared_dicom):
    """The Siemens PD/T2 QA phantom: sagittal, 35 x 64 x 64, 2.34 x 1.80 x 1.80 mm (PD echo)."""
    volumes = load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11")
    return volumes[0]


def test_the_sagittal_phantom_through_predict_is_flagged_with_plane_and_intensity(phantom):
    model = resolve_model("lesion-classifier")
    assert model.spec.domain is not None, "the zoo spec declares its training domain"
    prediction = predict(phantom, model)
    text = " ".join(prediction.warnings)
    # the plane, from the direction cosines read here: the slice normal is closest to left-right
    assert int(np.argmax(np.abs(phantom.geometry.direction[:, 0]))) == 0
    assert any("sagittal" in w and "axial" in w for w in prediction.warnings), text
    # the intensity, with the percentile computed independently
    p99 = float(np.percentile(phantom.array.astype(np.float64), 99))
    _lo, hi = model.spec.domain.intensity_range[1]
    assert p99 > hi
    assert any(
        f"99th intensity percentile is {p99:.4g}" in w and f"{hi:.4g}" in w for w in prediction.warnings
    )
    # the answer is still given, and the dictionary keeps its keys plus the warnings
    d = prediction.to_dict()
    assert {"model", "task", "classes", "probabilities", "predicted"} <= set(d)
    assert d["warnings"] == prediction.warnings


def test_the_sample_brain_raises_no_false_alarm():
    scan = make_sample().scan
    for name in ("lesion-classifier", "lesion-segmenter", "shortcut-classifier", "lesion-protonet"):
        model = resolve_model(name)
        assert model.spec.domain is not None
        assert check_domain(scan, model.spec) == [], name
    assert predict(scan, resolve_model("lesion-classifier")).warnings == []


def test_a_spec_without_domain_fields_gives_no_warnings(phantom):
    zoo = resolve_model("lesion-classifier")
    bare = dataclasses.replace(zoo.spec, domain=None)
    assert check_domain(phantom, bare) == []
    assert predict(phantom, load_model(bare, module=zoo.module)).warnings == []


def test_explain_carries_domain_warnings_and_recomputes_them_on_a_cache_hit(tmp_path):
    import torch

    class Mean(torch.nn.Module):
        def forward(self, x):
            s = x.mean(dim=(1, 2, 3, 4))
            return torch.stack([-s, s], 1)

    spec = _spec({"modality": ["MR"], "intensity_range": [[0, 1], [0, 2]]})
    spec.normalization.kind = "zscore"
    model = load_model(spec, module=Mean().eval())
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 2, size=(6, 7, 8)).astype(np.float32)
    ok = _volume((6, 7, 8), array=array)
    cache = ResultCache(tmp_path)
    first = explain(ok, model, "saliency", target=1, cache=cache)
    assert first.warnings == [] and first.prediction.warnings == []
    # eight times brighter (a power of two: z-scoring cancels it exactly): the model input, and so
    # the cache key, is the same; the scan is not
    bright = _volume((6, 7, 8), array=array * 8)
    hit = explain(bright, model, "saliency", target=1, cache=cache)
    assert hit.provenance["cache"] == "hit"
    assert len(hit.warnings) == 1 and "99th intensity percentile" in hit.warnings[0]
    assert hit.prediction.warnings == hit.warnings
    ct = _volume((6, 7, 8), array=array, modality="CT")
    assert explain(ct, model, "saliency", target=1).warnings == [
        "the scan's modality is CT, but 'm' was trained on MR."
    ]


def test_each_field_gives_one_sentence_with_both_figures():
    domain = {"modality": ["MR"], "body_region": ["BRAIN", "HEAD"], "plane": ["axial"], "spacing_mm": [1, 3]}
    spec = _spec(domain)
    assert check_domain(_volume(BodyPartExamined="HEAD"), spec) == []
    assert check_domain(_volume(modality="OT"), spec) == []  # unknown modality: not checked
    [w] = check_domain(_volume(modality="CT"), spec)
    assert "CT" in w and "MR" in w
    [w] = check_domain(_volume(BodyPartExamined="knee"), spec)
    assert "KNEE" in w and "BRAIN/HEAD" in w
    [w] = check_domain(_volume(spacing=(2.5, 1, 1), direction=CORONAL), spec)  # coronal, 2.5 mm slices
    assert "coronal" in w and "posterior-anterior" in w and "axial" in w
    # a near-isotropic coronal volume looks like any other once resampled: the plane is not checked
    assert check_domain(_volume(spacing=(1.05, 1, 1), direction=CORONAL), spec) == []
    [w] = check_domain(_volume(spacing=(1, 0.5, 0.5)), spec)
    assert "1.00 x 0.50 x 0.50 mm" in w and "1-3 mm" in w


def test_intensity_percentiles_against_the_training_range():
    # values 0..999: the 1st percentile is 9.99, the 99th 989.01 (numpy's linear rule)
    array = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    inside = {"intensity_percentiles": [1, 99], "intensity_range": [[0, 10], [900, 1000]]}
    assert check_domain(_volume((10, 10, 10), array=array), _spec(inside)) == []
    # the margin is 10 % of the training span (0 to 1000): 989 is within 100 of 850
    near = {"intensity_percentiles": [1, 99], "intensity_range": [[0, 10], [800, 900]]}
    assert check_domain(_volume((10, 10, 10), array=array), _spec(near)) == []
    far = {"intensity_percentiles": [1, 99], "intensity_range": [[0, 10], [500, 600]]}
    [w] = check_domain(_volume((10, 10, 10), array=array), _spec(far))
    assert "99th intensity percentile is 989" in w and "500 to 600" in w


def test_field_of_view_against_the_model_input():
    domain = {"min_fov_fraction": 0.5}
    spec = _spec(domain, spacing_mm=[1, 1, 1], size=[10, 10, 10])
    # axial: array z runs inferior-superior; 4 slices of 1 mm cover 4 of the model's 10 mm
    [w] = check_domain(_volume((4, 10, 10)), spec)
    assert "covers 4 mm inferior-superior, 40 %" in w and "10 mm field of view" in w
    assert check_domain(_volume((6, 10, 10)), spec) == []
    # no fixed input size (sliding windows or native size): the model sees the whole scan
    assert check_domain(_volume((4, 10, 10)), _spec(domain)) == []


def test_domain_round_trips_and_bad_fields_are_one_clear_sentence():
    domain = {
        "modality": ["mr"],
        "plane": ["Axial"],
        "spacing_mm": [2, 3],
        "intensity_range": [[0, 0], [150, 300]],
        "min_fov_fraction": 0.5,
        "computed_from": "test",
    }
    spec = _spec(domain)
    assert spec.domain.modality == ["MR"] and spec.domain.plane == ["axial"]
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.domain == spec.domain
    assert _spec().domain is None and _spec().to_dict()["domain"] is None
    for bad, message in [
        ({"plane": ["oblique"]}, "domain plane must be among axial, coronal, sagittal, got ['oblique']"),
        ({"spacing_mm": [3, 2]}, "domain spacing_mm must be [min, max] with min <= max, got [3.0, 2.0]"),
        ({"min_fov_fraction": 2}, "domain min_fov_fraction must be in (0, 1], got 2"),
        ({"modality": []}, "domain modality must be a non-empty list of names, got []"),
    ]:
        with pytest.raises(ModelError) as err:
            _spec(bad)
        assert str(err.value) == message
    with pytest.raises(ModelError, match="invalid spec"):
        _spec({"colour": "blue"})
    assert Domain().intensity_percentiles == (1.0, 99.0)
