"""The model evidence's effort: the passes counted by a model that counts its samples, and the
effort chosen to fit the time limit (what a 256³ real segmenter gets, what a 96³ demo gets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mlmi_interp.explain import explain
from napari_mlmi_interp.explain.methods import METHODS
from napari_mlmi_interp.explain.timing import PassTiming, estimate
from napari_mlmi_interp.framework import model_evidence
from napari_mlmi_interp.framework.evidence.effort import (
    EFFORTS,
    choose_effort,
    effort_for,
    effort_text,
    evidence_passes,
)
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.models.loading import load_model
from napari_mlmi_interp.models.spec import ModelSpec

from .test_segmentation_evidence import SmallConv

SHAPE = (10, 10, 10)
SAMPLES = {"forward": 0, "backward": 0}  # module-level: the randomised copies count too


class CountingConv(SmallConv):
    """The two-layer segmenter of the segmentation tests, counting the samples it sees."""

    def forward(self, x):
        graph = torch.is_grad_enabled() and x.requires_grad
        SAMPLES["backward" if graph else "forward"] += int(x.shape[0])
        return super().forward(x)


@pytest.fixture(scope="module")
def case():
    spec = ModelSpec.from_dict(
        {"name": "counting-seg", "task": "segmentation", "classes": ["background", "target"]}
        | {"normalization": {"kind": "none"}}
    )
    model = load_model(spec, module=CountingConv())
    rng = np.random.default_rng(0)
    scan = Volume(rng.random(SHAPE).astype(np.float32), Geometry(SHAPE, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    roi = np.zeros(SHAPE, bool)
    roi[3:7, 3:7, 3:7] = True
    return model, scan, roi


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
@pytest.mark.parametrize("effort", list(EFFORTS))
@pytest.mark.parametrize("batch_size", [4, 1])
def test_the_passes_counted_are_the_passes_the_model_runs(case, method, effort, batch_size):
    model, scan, roi = case
    result = explain(scan, model, method, target="target", roi=roi)
    counted = estimate(METHODS[method], SHAPE, None, params=dict(result.params))
    SAMPLES.update(forward=0, backward=0)
    model_evidence(result, model, baseline="zero", batch_size=batch_size, **EFFORTS[effort])
    forwards, backwards = evidence_passes(
        EFFORTS[effort],
        (counted.forwards, counted.backwards),
        segmenter=True,
        batch_size=batch_size,
        layers=2,  # the model's layers with parameters: no more randomisation stages
    )
    # a sample run with the graph is a forward and a backward; the method's extra forwards
    # (IG's convergence check) run without it
    assert SAMPLES["backward"] == backwards
    assert SAMPLES["forward"] + SAMPLES["backward"] == forwards


def test_the_full_effort_of_saliency_on_a_classifier_is_the_sum_of_its_phases():
    # deletion 21 + insertion 21 + infidelity 16 + 4 + region 2 + TTA 9, then 5 saliency runs
    assert evidence_passes(EFFORTS["full"], (1, 1), segmenter=False) == (73 + 5, 5)
    # at 256³ one sample per batch: infidelity needs one unperturbed pass per perturbation
    assert evidence_passes(EFFORTS["full"], (1, 1), segmenter=True, batch_size=1) == (87 + 5, 5)


def test_the_largest_effort_that_fits_the_limit_is_chosen():
    fast = PassTiming(0.05, 0.1, SHAPE)  # a 96³ demo model: seconds
    assert choose_effort((1, 1), fast, segmenter=False, limit_minutes=10).name == "full"
    # a real segmenter at 256³ on two cores: 10 s a forward sample, 20 s a backward
    real = PassTiming(10.0, 20.0, (256, 256, 256))
    chosen = choose_effort((1, 1), real, segmenter=True, limit_minutes=10, batch_size=1, layers=10)
    # full: 92 forwards * 10 s + 5 backwards * 20 s = 1,020 s; quick: 50 * 10 + 3 * 20 = 560 s
    assert chosen.name == "quick" and chosen.fits
    assert chosen.seconds == pytest.approx(560.0)
    assert chosen.to_dict() == {
        "effort": "quick",
        "effort_passes": {"forward": 50, "backward": 3},
        "effort_estimate_s": 560.0,
        "effort_estimate_basis": "measured pass",
    }
    assert "~9 min" in effort_text(chosen) and "10 curve steps" in effort_text(chosen)
    slow = PassTiming(30.0, 60.0, (256, 256, 256))
    over = choose_effort((1, 1), slow, segmenter=True, limit_minutes=10, batch_size=1, layers=10)
    # brief: 29 * 30 s + 2 * 60 s = 990 s, over 10 minutes: the smallest effort, said so
    assert over.name == "brief" and not over.fits and over.seconds == pytest.approx(990.0)
    assert effort_text(over).endswith("(over the time limit)")
    assert "5 curve steps" in effort_text(over)
    # no timing: the full effort, not estimated
    assert choose_effort((1, 1), None, segmenter=True, limit_minutes=10).name == "full"
    # a backward that does not fit was not timed: twice a forward stands in for it
    unfit = PassTiming(10.0, 0.0, (256, 256, 256), backward_fits=False)
    priced = choose_effort((1, 1), unfit, segmenter=True, limit_minutes=10, batch_size=1, layers=10)
    assert priced.name == "quick" and priced.seconds == pytest.approx(50 * 10 + 3 * 20)


def test_a_batched_effort_is_priced_per_sample_in_a_batch_as_the_recommendations_are():
    timing = PassTiming(0.2, 0.4, (64, 64, 64), batch=4, batch_forward_s=0.05, batch_backward_s=0.1)
    full = choose_effort((1, 1), timing, segmenter=False, limit_minutes=10)  # batch of 4
    forwards, backwards = evidence_passes(EFFORTS["full"], (1, 1), segmenter=False)
    assert full.seconds == pytest.approx(forwards * 0.05 + backwards * 0.1)
    alone = choose_effort((1, 1), timing, segmenter=False, limit_minutes=10, batch_size=1)
    assert alone.seconds == pytest.approx(alone.forwards * 0.2 + alone.backwards * 0.4)


def test_an_explanation_without_a_kept_timing_is_priced_by_its_own_attribution_time(case):
    model, scan, roi = case
    result = explain(scan, model, "saliency", target="target", roi=roi, cache=None)
    fast = effort_for(result, model, limit_minutes=10)
    assert fast.name == "full"
    # the same map, had its one forward and backward taken a minute: 30 s a sample
    result.timings["attribute"] = 60.0
    slow = effort_for(result, model, limit_minutes=10)
    # full (75 + 2 stages) * 30 s is 39 min, quick 22 min, brief (26 + 2) * 30 s = 14 min
    assert slow.name == "brief" and not slow.fits
    assert slow.seconds == pytest.approx((24 + 2 + 2) * 30.0)
    assert slow.to_dict()["effort_estimate_basis"] == "the map's attribution time"


def test_occlusion_on_a_region_reruns_on_that_region_and_is_priced_on_it(case, monkeypatch):
    """The randomised models' occlusion maps are restricted to the map's own region (a full-volume
    rerun would cost 250,048 passes a stage at 256³ and compare unlike maps), and so is the price."""
    from napari_mlmi_interp.explain import engine

    model, scan, roi = case
    region = np.zeros(SHAPE, bool)
    region[4:6, 4:6, 4:6] = True
    params = {"window": 2, "stride": 2}
    result = explain(scan, model, "occlusion", target="target", roi=roi, region=region, params=params)
    np.testing.assert_array_equal(result.region, region)
    asked = []
    real = engine.explain
    monkeypatch.setattr(engine, "explain", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    SAMPLES.update(forward=0, backward=0)
    model_evidence(result, model, baseline="zero", **EFFORTS["brief"])
    assert len(asked) == 2 and all(np.array_equal(kw["region"], region) for kw in asked)
    in_region = estimate(METHODS["occlusion"], SHAPE, None, params=dict(result.params), region=region)
    whole = estimate(METHODS["occlusion"], SHAPE, None, params=dict(result.params))
    assert in_region.forwards < whole.forwards
    forwards, backwards = evidence_passes(EFFORTS["brief"], (in_region.forwards, 0), segmenter=True, layers=2)
    assert SAMPLES["forward"] == forwards and SAMPLES["backward"] == backwards == 0
    # the effort is priced on the region too
    result.timings["attribute"] = float(in_region.forwards)  # one second a pass
    priced = effort_for(result, model, limit_minutes=60)
    assert priced.name == "full"
    assert (priced.forwards, priced.backwards) == evidence_passes(
        EFFORTS["full"], (in_region.forwards, 0), segmenter=True, layers=2
    )
    assert priced.seconds == pytest.approx(priced.forwards * 1.0)
