"""Recommendations that fit the machine and the scan: estimated minutes from one measured pass.

The arithmetic is checked with injected timings (known forward/backward seconds give exact
minutes); how close the estimate comes to a measured run is a benchmark
(``benchmarks/timing.py``), never a wall-clock threshold here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.explain import get_method
from napari_mlmi_interp.explain.timing import (
    PassTiming,
    cost_label,
    estimate,
    forget_timings,
    known_timing,
    measure_pass,
    minutes_text,
    pass_timing,
    region_box_on_grid,
    remember_timing,
)
from napari_mlmi_interp.framework import Goal
from napari_mlmi_interp.framework.guide import MAX_PASSES, recommended_methods
from napari_mlmi_interp.io.volume import Geometry

BIG = (256, 256, 256)
#: The issue's figure: full-volume occlusion (window 8, stride 4) of a 256³ grid.
FULL_256_PASSES = ((256 - 8) // 4 + 1) ** 3 + 1  # 63³ windows + the unoccluded input
SEG_ELEMENTS = Goal("segmentation", "developer", "verify").elements


@pytest.fixture(autouse=True)
def _fresh_cache():
    forget_timings()
    yield
    forget_timings()


def _by_name(recs):
    return {r.method.name: r for r in recs}


def test_estimate_is_forward_samples_times_forward_plus_backward_samples_times_backward():
    timing = PassTiming(forward_s=3.0, backward_s=6.0, shape=(32, 32, 32), measured=False)
    ig = estimate(get_method("integrated_gradients"), (32, 32, 32), timing, params={"n_steps": 20})
    # Integrated Gradients: n_steps + 2 forwards (the path and both end points), n_steps backwards
    assert (ig.forwards, ig.backwards) == (22, 20)
    assert ig.seconds == pytest.approx(22 * 3.0 + 20 * 6.0)  # 186 s
    assert ig.minutes == pytest.approx(3.1) and ig.text == "~3 min"
    ablation = estimate(get_method("feature_ablation"), (32, 32, 32), timing, params={"n_segments": 99})
    assert (ablation.forwards, ablation.backwards, ablation.seconds) == (100, 0, 300.0)
    assert ablation.text == "~5 min"
    # measured in a batch too: methods with several forward samples run at the batch's rate
    batched = PassTiming(1.0, 2.0, (32, 32, 32), False, batch=4, batch_forward_s=0.25, batch_backward_s=0.5)
    ig = estimate(get_method("integrated_gradients"), (32, 32, 32), batched, params={"n_steps": 20})
    assert ig.seconds == pytest.approx(22 * 0.25 + 20 * 0.5)
    assert estimate(get_method("saliency"), (32, 32, 32), batched).seconds == pytest.approx(1.0 + 2.0)
    untimed = estimate(get_method("saliency"), (32, 32, 32))
    assert untimed.seconds is None and untimed.text == "time not measured"
    label = cost_label(get_method("integrated_gradients"), (32, 32, 32), timing, params={"n_steps": 20})
    assert label == "Integrated Gradients — 22 forward + 20 backward passes, ~3 min"
    assert cost_label(get_method("saliency"), (8, 8, 8)) == "Saliency — 1 forward + 1 backward passes"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "<1 min"),
        (59.9, "<1 min"),
        (60, "~1 min"),
        (89.9, "~1 min"),
        (90, "~2 min"),  # half up
        (7169, "~119 min"),
        (7170, "~2 h"),
        (5_000_960, "~1,389 h"),  # 250,048 passes at 20 s
    ],
)
def test_minutes_text(seconds, text):
    assert minutes_text(seconds) == text


def test_minutes_text_and_timings_refuse_nonsense():
    with pytest.raises(InputError, match="seconds must be a number >= 0"):
        minutes_text(-1)
    with pytest.raises(InputError, match="pass times must be >= 0"):
        PassTiming(-1.0, 1.0, (8, 8, 8))


def test_recommendations_are_ordered_by_estimated_time():
    elements = ("localization",)
    for fwd, bwd in ((1.0, 0.01), (0.01, 1.0)):
        timing = PassTiming(fwd, bwd, (32, 32, 32), measured=False)
        recs = recommended_methods(elements, shape=(32, 32, 32), timing=timing, limit_minutes=1e6)
        assert all(r.recommended for r in recs)
        seconds = [r.estimate.seconds for r in recs]
        assert seconds == sorted(seconds)
        for r in recs:  # each estimate is the method's own declared samples times the pass
            f, b = r.method.cost(dict(r.method.params), (32, 32, 32))
            assert r.estimate.seconds == pytest.approx(f * fwd + b * bwd)
        order = [r.method.name for r in recs]
        # SLIC ablation: 151 forwards; SmoothGrad: 16 forwards + 16 backwards
        if fwd > bwd:
            assert order.index("smoothgrad") < order.index("feature_ablation")
        else:
            assert order.index("feature_ablation") < order.index("smoothgrad")


def test_methods_over_the_time_limit_are_listed_as_too_slow_with_the_reason():
    timing = PassTiming(20.0, 40.0, BIG, measured=False)  # a 256³ segmenter on two cores
    recs = recommended_methods(SEG_ELEMENTS, shape=BIG, timing=timing)  # default limit: 10 min
    by = _by_name(recs)
    assert by["saliency"].recommended and by["saliency"].text == "Saliency ~1 min"
    ig = by["integrated_gradients"]  # 34 forwards + 32 backwards = 1,960 s
    assert not ig.recommended and ig.reason == "too slow here: ~33 min (limit 10 min)"
    assert ig.text == "Integrated Gradients: too slow here: ~33 min (limit 10 min)"
    flags = [r.recommended for r in recs]
    assert flags == sorted(flags, reverse=True)  # the recommended ones first, the too slow kept after
    relaxed = _by_name(recommended_methods(SEG_ELEMENTS, shape=BIG, timing=timing, limit_minutes=60))
    assert relaxed["integrated_gradients"].recommended


def test_full_volume_occlusion_of_a_256_grid_is_never_recommended():
    occlusion = get_method("occlusion")
    assert occlusion.cost(dict(occlusion.params), BIG) == (FULL_256_PASSES, 0)
    assert FULL_256_PASSES == 250_048 > MAX_PASSES
    for timing in (None, PassTiming(1e-6, 1e-6, BIG), PassTiming(20.0, 40.0, BIG)):
        recs = recommended_methods(SEG_ELEMENTS, shape=BIG, timing=timing, limit_minutes=1e9)
        occ = _by_name(recs)["occlusion"]
        assert not occ.recommended
        assert "250,048 passes over the whole volume" in occ.reason
        assert "restrict it to a region" in occ.reason
    slow = PassTiming(20.0, 40.0, BIG)
    occ = _by_name(recommended_methods(SEG_ELEMENTS, shape=BIG, timing=slow))["occlusion"]
    assert occ.reason.endswith("~1,389 h; restrict it to a region")  # 250,048 x 20 s


def test_roi_restricted_occlusion_is_recommended_when_a_region_is_given():
    region = np.zeros(BIG, bool)
    region[100:120, 100:120, 100:120] = True
    # the region's box grown by one window (8) each side, on the stride lattice: [92, 128) per
    # axis, 36 voxels: (36 - 8) // 4 + 1 = 8 windows per axis, plus the unoccluded input
    expected = 8**3 + 1
    occlusion = get_method("occlusion")
    assert occlusion.cost(dict(occlusion.params), BIG, region=region) == (expected, 0)
    timing = PassTiming(0.5, 1.0, BIG, measured=False)
    recs = recommended_methods(SEG_ELEMENTS, shape=BIG, timing=timing, region=region)
    occ = _by_name(recs)["occlusion"]
    assert occ.recommended and occ.estimate.in_region
    assert occ.estimate.seconds == pytest.approx(expected * 0.5)  # 256.5 s
    assert occ.text == "Occlusion ~4 min in the region"
    without = _by_name(recommended_methods(SEG_ELEMENTS, shape=BIG, timing=timing))["occlusion"]
    assert not without.recommended


def test_the_region_counts_on_the_model_grid_through_patient_space():
    native = Geometry((40, 40, 40), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    grid = Geometry((20, 20, 20), (2.0, 2.0, 2.0), (10.5, 0.5, 0.5))  # 2 mm, shifted 10 mm in z
    mask = np.zeros(native.shape, bool)
    mask[20:30, 4:8, 0:2] = True  # z 20..29 mm, y 4..7 mm, x 0..1 mm (voxel centres)
    box = region_box_on_grid(mask, native, grid)
    # edges in mm: z [19.5, 29.5) -> grid (z - 10.5) / 2 = [4.5, 9.5) -> voxels 5..9
    #              y [3.5, 7.5)   -> (y - 0.5) / 2 = [1.5, 3.5) -> voxels 2..3
    #              x [-0.5, 1.5)  -> [-0.5, 0.5) -> voxel 0
    expected = np.zeros(grid.shape, bool)
    expected[5:10, 2:4, 0:1] = True
    np.testing.assert_array_equal(box, expected)
    assert region_box_on_grid(np.zeros(native.shape, bool), native, grid) is None


class _Model:
    """What :func:`pass_timing` needs of a LoadedModel."""

    def __init__(self, module, sha256="abc"):
        self.module, self.sha256 = module, sha256
        self.spec = type("Spec", (), {"input": type("Input", (), {"channels": 2})()})()


def test_a_pass_is_measured_once_per_model_and_grid(monkeypatch):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.ReLU()).eval()
    measured = measure_pass(module, (6, 7, 8), channels=2)
    assert measured.shape == (6, 7, 8) and measured.measured
    assert measured.forward_s > 0 and measured.backward_s >= 0.5 * measured.forward_s
    assert measured.batch == 4 and measured.batch_backward_s >= 0.5 * measured.batch_forward_s > 0
    single = measure_pass(module, (6, 7, 8), channels=2, batch=1)
    assert single.batch == 1 and single.batch_forward_s is None
    assert all(p.grad is None for p in module.parameters())  # the model is left as it was

    calls = []

    def fake(module, shape, *, channels=1):
        calls.append((tuple(shape), channels))
        return PassTiming(0.25, 0.5, tuple(shape))

    monkeypatch.setattr("napari_mlmi_interp.explain.timing.measure_pass", fake)
    model = _Model(module)
    assert known_timing("abc", (6, 7, 8)) is None
    first = pass_timing(model, (6, 7, 8))
    assert pass_timing(model, (6, 7, 8)) is first and calls == [((6, 7, 8), 2)]
    pass_timing(model, (6, 7, 9))  # another grid: measured again
    assert len(calls) == 2
    given = PassTiming(1.0, 2.0, (4, 4, 4), measured=False)
    assert pass_timing(_Model(module, "other"), (4, 4, 4), timing=given) is given
    assert known_timing("other", (4, 4, 4)) is given and len(calls) == 2
    assert remember_timing("x", (1, 1, 1), given) is known_timing("x", (1, 1, 1))


def test_the_session_recommends_with_the_minutes_of_its_explanation(tmp_path):
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.framework.session import AssessmentSession
    from napari_mlmi_interp.models.held import held_models
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    model = held_models().resolve("lesion-classifier")
    result = explain(sample.scan, model, "saliency", target="lesion")
    shape = tuple(result.model_grid.shape)
    session = AssessmentSession("ana")
    session.set_goal(Goal("segmentation", "developer", "verify"))
    session.select(result, model=model, scan=sample.scan)
    assert all(r.estimate.seconds is None for r in session.recommended())  # not timed yet
    job = session.timing_request(max_voxels=int(np.prod(shape)) - 1)
    assert job is None  # a grid larger than the automatic limit waits for the reader's request
    remember_timing(model.sha256, shape, PassTiming(60.0, 120.0, shape, measured=False))
    assert session.timing_request() is None  # known: nothing to measure
    recs = session.recommended(limit=2)
    fits = [r for r in recs if r.recommended]
    assert len(fits) == 2 and all(r.text.endswith("~3 min") for r in fits)  # 60 s + 120 s
    assert all(not r.recommended for r in recs[2:])
    session.time_limit_min = 2.0
    assert not any(r.recommended for r in session.recommended())
    session.time_limit_min = 1e9
    occ = _by_name(session.recommended(limit=99))["occlusion"]
    assert occ.recommended and not occ.estimate.in_region
    session.set_region(sample.mask)
    occ_roi = _by_name(session.recommended(limit=99))["occlusion"]
    assert occ_roi.estimate.in_region and occ_roi.estimate.forwards < occ.estimate.forwards


@pytest.mark.gui
def test_the_sidebar_and_the_explain_panel_show_minutes(viewer_with_sample, qtbot, widgets, tmp_path):
    from napari_mlmi_interp._widgets import ExplainWidget, FrameworkSidebar

    viewer, _scan, _mask = viewer_with_sample
    panel = ExplainWidget(viewer)
    widgets.append(panel)
    viewer.window.add_dock_widget(panel, name="Explain")
    panel.model.setCurrentIndex(panel.model.findData("lesion-classifier"))
    panel.method.setCurrentIndex(panel.method.findData("saliency"))
    panel.target.setCurrentIndex(panel.target.findData("lesion"))
    panel.run()
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)
    heatmap = next(ly for ly in viewer.layers if ly.metadata.get("kind") == "heatmap")
    sidebar = FrameworkSidebar(viewer, study_path=tmp_path / "study.sqlite", reader="ana")
    widgets.append(sidebar)
    viewer.window.add_dock_widget(sidebar, name="Interpretability framework")
    sidebar.select(heatmap)
    current = sidebar.session.current
    key, shape = current.model.sha256, tuple(current.explanation.model_grid.shape)
    # a small grid is timed as soon as the explanation is picked, off the GUI thread
    qtbot.waitUntil(lambda: not sidebar.busy and known_timing(key, shape) is not None, timeout=120_000)
    text = sidebar.goal_box.recommended.text()
    assert " min" in text.splitlines()[0] and "time not measured" not in text
    assert "one measured forward and backward pass" in sidebar.goal_box.time_limit.toolTip()
    # a known pass: exact minutes, and the limit (a setting in the goal box) filters
    remember_timing(key, shape, PassTiming(60.0, 120.0, shape, measured=False))
    sidebar.goal_box.time_limit.setValue(5.0)
    lines = sidebar.goal_box.recommended.text().splitlines()
    assert "Saliency ~3 min" in lines[0]  # 1 x 60 s + 1 x 120 s
    n = get_method("integrated_gradients").params["n_steps"]  # (n + 2) x 60 s + n x 120 s
    assert f"not recommended: Integrated Gradients: too slow here: ~{3 * n + 2} min (limit 5 min)" in lines
    panel.refresh_layers()  # the Explain panel labels its methods with the same estimate
    saliency = panel.method.itemText(panel.method.findData("saliency"))
    assert saliency == "Saliency — 1 forward + 1 backward passes, ~3 min"


def test_a_backward_that_does_not_fit_in_memory_is_not_run_and_not_recommended():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU()).eval()
    timing = measure_pass(module, (16, 16, 16), budget_mb=1e-3)  # a 1 kB budget: nothing fits
    assert not timing.backward_fits and timing.backward_s == 0 and timing.sample_bytes > 1024
    assert timing.forward_s > 0
    by = _by_name(recommended_methods(("localization",), shape=(16, 16, 16), timing=timing))
    assert not by["saliency"].recommended and by["saliency"].estimate.seconds is None
    assert by["saliency"].reason.startswith("one backward pass needs more memory than is free here")
    assert by["occlusion"].estimate.seconds is not None  # forward passes only: still estimated
    assert measure_pass(module, (16, 16, 16)).backward_fits  # the default budget: it fits
