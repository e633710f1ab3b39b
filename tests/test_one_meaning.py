"""One figure, one meaning: the same map and region give the same figures in the sidebar,
``mlmi-interp evaluate`` and ``batch`` (one top-k %, one tolerance, shown with the figures);
no two bands on one map contradict; the faithfulness baseline is declared where it is used."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mlmi_interp import metrics as M
from napari_mlmi_interp.cli import build_parser, main
from napari_mlmi_interp.framework import (
    DEFAULT_SETTINGS,
    FIGURES,
    FigureSettings,
    map_evidence,
    model_evidence,
)
from napari_mlmi_interp.io import load, save
from napari_mlmi_interp.io.volume import Geometry, Volume
from napari_mlmi_interp.sample import make_sample

MAP_ELEMENTS = ("localization", "visual_recognizability", "physical_attribution")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """One case (the sample brain and its lesion mask) through ``batch`` with Grad-CAM."""
    from napari_mlmi_interp.cohort import run_batch

    root = tmp_path_factory.mktemp("one_meaning")
    sample = make_sample()
    (root / "scans").mkdir()
    (root / "masks").mkdir()
    scan_path, roi_path = root / "scans" / "brain.nii.gz", root / "masks" / "brain.nii.gz"
    save(sample.scan, scan_path)
    save(sample.mask, roi_path)
    result = run_batch(
        root / "scans",
        model="lesion-classifier",
        methods=["gradcam"],
        out=root / "out",
        masks=root / "masks",
        workers=0,
    )
    assert not result.failed, result.failed
    folder = root / "out" / "cases" / result.records[0]["case"]
    sidecar = json.loads((folder / "gradcam.json").read_text())
    return {
        "scan": scan_path,
        "roi": roi_path,
        "map": folder / sidecar["map"],
        "sidecar": sidecar,
        "record": result.records[0],
    }


def _evaluate_json(cohort, capsys) -> dict:
    args = ["evaluate", str(cohort["map"]), "--roi", str(cohort["roi"]), "--scan", str(cohort["scan"])]
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _sidebar_evidence(cohort):
    """What the sidebar computes for this explanation and region (its own call, its own k)."""
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model

    scan = load(cohort["scan"])[0]
    roi = load(cohort["roi"])[0].array > 0
    result = explain(scan, resolve_model("lesion-classifier"), "gradcam")
    return map_evidence(result.native, roi=roi, scan=scan)


# -- one default -----------------------------------------------------------------------------------
def test_one_topk_percent_and_one_tolerance_everywhere():
    from napari_mlmi_interp.cohort.batch import run_batch, run_case
    from napari_mlmi_interp.export.dicom import export_dicom
    from napari_mlmi_interp.framework.files import evaluate_files
    from napari_mlmi_interp.overlays.explanation_layers import (
        contour_layer_data,
        explanation_layer_data,
        isosurface_layer_data,
    )

    assert (DEFAULT_SETTINGS.topk_percent, DEFAULT_SETTINGS.tolerance_mm) == (1.0, 5.0)
    parser = build_parser()
    for command in ("evaluate", "batch"):
        needed = ["evaluate", "m.nii"] if command == "evaluate" else ["batch", "in", "--model", "x"]
        extra = [] if command == "evaluate" else ["--method", "gradcam", "--out", "o"]
        args = parser.parse_args(needed + extra)
        assert (args.percent, args.tolerance_mm) == (1.0, 5.0), command
    for fn in (
        run_batch,
        run_case,
        export_dicom,
        contour_layer_data,
        isosurface_layer_data,
        explanation_layer_data,
    ):
        assert inspect.signature(fn).parameters["percent"].default == 1.0, fn.__name__
    for fn in (run_batch, run_case):
        assert inspect.signature(fn).parameters["tolerance_mm"].default == 5.0, fn.__name__
    # the functions whose default is "the settings" record the settings they used
    for fn in (map_evidence, model_evidence, evaluate_files):
        assert inspect.signature(fn).parameters["percent"].default is None, fn.__name__
    with pytest.raises(ValueError, match="topk_percent must be in"):
        FigureSettings(topk_percent=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        FigureSettings(baseline="noise")


@pytest.mark.slow
def test_same_map_same_figures_from_sidebar_evaluate_and_batch(cohort, capsys):
    sidebar = _sidebar_evidence(cohort).to_dict()
    evaluated = _evaluate_json(cohort, capsys)
    batch = cohort["sidecar"]["metrics"]
    for element in MAP_ELEMENTS:
        assert sidebar[element] == batch[element] == evaluated["by_element"][element], element
    for key in FIGURES:
        if FIGURES[key].element in MAP_ELEMENTS and key in sidebar["bands"]:
            assert sidebar["bands"][key] == batch["bands"][key] == evaluated["bands"][key], key
    # the settings are stored beside the figures, the same in all three
    for out in (sidebar["settings"], batch["settings"], evaluated["settings"]):
        assert out["topk_percent"] == 1.0 and out["tolerance_mm"] == 5.0
    # the batch summary row holds the same numbers
    figures = cohort["record"]["methods"]["gradcam"]["figures"]
    for key in ("topk_dice", "topk_iou", "pointing_game", "peak_to_roi_mm", "relevance_mass_accuracy"):
        assert figures[key] == batch["localization"][key], key
    # a non-trivial map: the figures compared are not all empty
    assert batch["localization"]["topk_dice"] > 0 and batch["localization"]["pointing_game"] is True


@pytest.mark.slow
def test_evaluate_text_names_k_and_tolerance(cohort, capsys):
    args = ["evaluate", str(cohort["map"]), "--roi", str(cohort["roi"])]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "top-1 % Dice" in text and "top-1 % IoU" in text and "pointing game (5 mm)" in text
    assert "top-k" not in text
    assert main([*args, "--percent", "2.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["topk_percent"] == 2.5


@pytest.mark.gui
@pytest.mark.slow
def test_sidebar_cards_show_the_batch_figures_with_k(cohort, make_napari_viewer, qtbot):
    """The sidebar widget, fed by the Explain panel's defaults, shows the batch's numbers."""
    from napari_mlmi_interp._widgets import ExplainWidget, FrameworkSidebar
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.overlays import add_layer, volume_layer_data

    viewer = make_napari_viewer(show=True)
    scan, roi = load(cohort["scan"])[0], load(cohort["roi"])[0]
    scan_layer = add_layer(viewer, volume_layer_data(scan))
    roi_layer = add_layer(viewer, volume_layer_data(roi, layer_type="labels", name="truth"))
    model = resolve_model("lesion-classifier")
    panel = ExplainWidget(viewer)
    sidebar = FrameworkSidebar(viewer, study_path=cohort["scan"].parent / "study.sqlite", reader="t")
    try:
        assert panel.percent.value() == DEFAULT_SETTINGS.topk_percent
        layers = panel.show_result(explain(scan, model, "gradcam"), scan_layer.name, model=model)
        sidebar.select(layers["heatmap"])
        sidebar.select_region(roi_layer)
        assessment = sidebar.assess_now(with_model=False)
        batch = cohort["sidecar"]["metrics"]
        shown = assessment.to_dict()
        for element in MAP_ELEMENTS:
            assert shown[element] == batch[element], element
        card = sidebar.cards["localization"]
        names = {w.text() for w in card.findChildren(type(card.value_labels["topk_dice"]))}
        assert {"top-1 % Dice", "top-1 % IoU", "pointing game (5 mm)"} <= names
        assert card.value_labels["topk_dice"].text() == assessment["topk_dice"].text()
        assert card.band_labels["peak_to_roi_mm"].text() == batch["bands"]["peak_to_roi_mm"]
    finally:
        sidebar.shutdown()
        panel.shutdown()


# -- coherent bands --------------------------------------------------------------------------------
def _grid(shape, spacing) -> Geometry:
    return Geometry(tuple(shape), tuple(float(s) for s in spacing), (0.0, 0.0, 0.0), np.eye(3))


def _brute_distance_mm(a: np.ndarray, roi: np.ndarray, spacing) -> float:
    """From the largest value's voxel to the nearest region voxel, in mm (all pairs, no EDT)."""
    peak = np.array(np.unravel_index(int(np.argmax(a)), a.shape), dtype=float)
    inside = np.argwhere(roi).astype(float)
    return float(np.sqrt((((inside - peak) * np.asarray(spacing)) ** 2).sum(axis=1)).min())


@pytest.mark.parametrize(
    ("peak", "expected_mm", "peak_band", "hit"),
    [((21, 23, 20), np.sqrt(20.0), "pass", True), ((17, 27, 20), 8.0, "warn", False)],
)
def test_pointing_game_and_peak_distance_agree_on_the_occlusion_case(peak, expected_mm, peak_band, hit):
    """The reported case: 4.47 mm from the region was 'miss [fail]' beside 'peak 4.47 mm [pass]'."""
    shape, spacing = (40, 40, 40), (1.0, 1.0, 1.0)
    roi = np.zeros(shape, bool)
    roi[15:20, 10:20, 15:25] = True  # a box whose last rows are z = 19 and y = 19
    a = np.random.default_rng(0).uniform(0, 0.1, shape)
    a[peak] = 1.0  # 2 mm past z = 19 and 4 mm past y = 19 (4.47 mm); or 8 mm past y = 19
    volume = Volume(a.astype(np.float32), _grid(shape, spacing))
    evidence = map_evidence(volume, roi=roi)
    assert evidence["peak_to_roi_mm"].value == pytest.approx(expected_mm, abs=1e-9)
    assert evidence["peak_to_roi_mm"].value == pytest.approx(_brute_distance_mm(a, roi, spacing))
    assert evidence["pointing_game"].value is hit
    assert evidence["peak_to_roi_mm"].band == peak_band
    assert (evidence["pointing_game"].band == "pass") is hit
    assert evidence["pointing_game"].label == "pointing game (5 mm)"


def test_pointing_game_hits_exactly_when_the_peak_distance_passes_on_random_maps():
    rng = np.random.default_rng(13)
    outcomes = set()
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(12, 24, size=3))
        spacing = tuple(float(s) for s in rng.choice([0.7, 1.0, 1.5, 2.5, 3.0], size=3))
        roi = np.zeros(shape, bool)
        lo = [int(rng.integers(0, n - 3)) for n in shape]
        size = [int(rng.integers(1, 4)) for _ in shape]
        roi[tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))] = True
        a = rng.normal(size=shape)  # signed: the peak is the largest value, not the largest |value|
        settings = FigureSettings(
            topk_percent=float(rng.choice([0.5, 1.0, 5.0])), tolerance_mm=float(rng.uniform(0, 12))
        )
        evidence = map_evidence(
            Volume(a.astype(np.float32), _grid(shape, spacing)), roi=roi, settings=settings
        )
        distance = evidence["peak_to_roi_mm"].value
        assert distance == pytest.approx(_brute_distance_mm(a.astype(np.float32), roi, spacing), abs=1e-6)
        hit = evidence["pointing_game"].value
        assert hit == (distance <= settings.tolerance_mm)
        assert (
            hit == (evidence["peak_to_roi_mm"].band == "pass") == (evidence["pointing_game"].band == "pass")
        )
        # the other linked pair: one overlap, one band
        assert evidence["topk_iou"].band == evidence["topk_dice"].band
        assert evidence.settings["tolerance_mm"] == settings.tolerance_mm
        outcomes.add(hit)
    assert outcomes == {True, False}  # both sides of the tolerance were exercised


# -- the faithfulness baseline ---------------------------------------------------------------------
def test_deletion_and_insertion_share_one_default_baseline():
    defaults = {
        fn.__name__: inspect.signature(fn).parameters["baseline"].default
        for fn in (M.deletion_curve, M.insertion_curve, M.region_removal)
    }
    assert set(defaults.values()) == {DEFAULT_SETTINGS.baseline} == {"blur"}, defaults
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 6, 7, 8)).astype(np.float32))
    from scipy.ndimage import gaussian_filter

    expected = gaussian_filter(x.numpy(), sigma=(0, 0, 1.0, 2.0, 3.0))
    got = M.baseline_like(x, "blur", blur_sigma=(1.0, 2.0, 3.0)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_baseline_is_declared_on_the_card_and_in_the_json():
    from scipy.ndimage import gaussian_filter

    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.framework.evidence import score_function
    from napari_mlmi_interp.models import resolve_model

    sample = make_sample()
    model = resolve_model("lesion-classifier")
    result = explain(sample.scan, model, "gradcam", target="lesion")
    evidence = model_evidence(result, model, steps=4, randomisation_stages=0, infidelity_samples=4, tta=0)
    declared = "blurred scan (Gaussian σ = 9 mm)"
    for key in ("deletion_auc", "insertion_auc", "prediction_drop"):
        assert declared in evidence[key].note, key
        assert evidence[key].to_dict()["note"] == f"baseline: {declared}"
    assert "not fall steadily" in FIGURES["deletion_auc"].definition
    settings = evidence.to_dict()["settings"]
    assert settings["baseline"] == "blur" and settings["baseline_text"] == declared
    assert settings["blur_sigma_mm"] == 9.0 and settings["topk_percent"] == 1.0
    assert evidence["prediction_drop"].label == "score drop without top-1 % region"
    # 9 mm on the model's 3 mm grid is a 3-voxel blur: the curve is the one computed by hand
    x = result.prediction.model_input.tensor()
    assert result.prediction.model_input.grid.spacing == (3.0, 3.0, 3.0)
    base = torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, 3, 3, 3)))
    _f, s = M.deletion_curve(
        score_function(model, 1), x, np.asarray(result.model_map, dtype=np.float64), steps=4, baseline=base
    )
    np.testing.assert_allclose(evidence.curves["deletion"]["y"], s, rtol=1e-6)
    # a constant baseline passed instead is declared as such
    zero = model_evidence(
        result, model, baseline="zero", steps=2, randomisation_stages=0, infidelity_samples=4, tta=0
    )
    assert zero["deletion_auc"].note == "baseline: zero (model input, after normalisation)"
    assert zero.settings["baseline"] == "zero"


def test_an_explicit_setting_overrides_and_is_recorded(tmp_path: Path):
    shape = (10, 10, 10)
    a = np.zeros(shape, np.float32)
    a[5, 5, 8] = 1.0
    roi = np.zeros(shape, bool)
    roi[5, 5, 2:5] = True  # 4 voxels of 2 mm from the peak: 8 mm
    volume = Volume(a, _grid(shape, (2.0, 2.0, 2.0)))
    default = map_evidence(volume, roi=roi)
    wide = map_evidence(volume, roi=roi, tolerance_mm=8.0)
    assert default["pointing_game"].value is False and default["peak_to_roi_mm"].band == "warn"
    assert wide["pointing_game"].value is True and wide["peak_to_roi_mm"].band == "pass"
    assert wide.settings["tolerance_mm"] == 8.0 and wide["pointing_game"].label == "pointing game (8 mm)"
    five = map_evidence(volume, roi=roi, percent=5.0)
    assert five["topk_dice"].label == "top-5 % Dice" and five.settings["topk_percent"] == 5.0
