"""Segmentation on all five elements: model evidence for "class T inside ROI M" on small
synthetic segmenters whose answers are known by construction (computed here by hand, not by
the code under test), and the same figures end to end on the demo segmenter."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from napari_mlmi_interp.explain import explain
from napari_mlmi_interp.explain.cache import ResultCache
from napari_mlmi_interp.framework import DEFAULT_BANDS, FIGURES, model_evidence
from napari_mlmi_interp.framework.evidence.from_model import MODEL_FIGURES
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.metrics import augmented_copies
from napari_mlmi_interp.metrics.augmentation import shift_back
from napari_mlmi_interp.models.loading import load_model
from napari_mlmi_interp.models.spec import ModelSpec
from napari_mlmi_interp.vocabulary import FIGURES_BY_ELEMENT

SHAPE = (10, 10, 10)  # 1,000 voxels of 2 mm (8 mm³ = 0.008 mL each)
SPACING = (2.0, 2.0, 2.0)
VOXEL_ML = 0.008
W, C = 0.7, -0.4  # the region's weight and every voxel's bias


def _spec(name="tiny-seg"):
    return ModelSpec.from_dict(
        {
            "name": name,
            "task": "segmentation",
            "classes": ["background", "target"],
            "normalization": {"kind": "none"},
        }
    )


def _region():
    """R: a 5 x 5 x 4 box of 100 voxels, 10 % of the grid."""
    r = np.zeros(SHAPE, bool)
    r[2:7, 3:8, 4:8] = True
    return r


class RegionLinear(torch.nn.Module):
    """Class-1 logit = W * x inside R, + C everywhere; class-0 logit = 0.

    The ROI score of class 1 in any M containing R is ``W * sum_R x + C * |M|``: it depends
    on R's voxels only, linearly, and its gradient is W on R and 0 elsewhere.
    """

    def __init__(self, region):
        super().__init__()
        self.layer = torch.nn.Module()  # a layer with parameters, for the randomisation test
        self.layer.w = torch.nn.Parameter(torch.tensor(W))
        self.layer.c = torch.nn.Parameter(torch.tensor(C))
        self.register_buffer("region", torch.from_numpy(region.astype(np.float32)))

    def forward(self, x):
        one = self.layer.w * x[:, 0] * self.region + self.layer.c
        return torch.stack([torch.zeros_like(one), one], dim=1)


class Threshold(torch.nn.Module):
    """Class 1 wherever x > 0.5 (logits 0 and x - 0.5): a fixed threshold, no parameters to learn."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x - 0.5], dim=1)


class SmallConv(torch.nn.Module):
    """A 3 x 3 x 3 convolution, tanh, a 1 x 1 x 1 convolution to two classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.head = torch.nn.Conv3d(4, 2, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.features(x)))


def _scan(array):
    geometry = Geometry(SHAPE, SPACING, (0.0, 0.0, 0.0))
    return Volume(np.asarray(array, np.float32), geometry, modality="MR", case_id="case-synthetic")


@pytest.fixture(scope="module")
def linear_case():
    """The region model, a scan with x = 1 in R and noise elsewhere, M = R grown by one voxel."""
    region = _region()
    rng = np.random.default_rng(3)
    array = np.where(region, 1.0, 0.3 * rng.standard_normal(SHAPE))
    roi = np.zeros(SHAPE, bool)
    roi[1:8, 2:9, 3:9] = True  # M contains R
    model = load_model(_spec(), module=RegionLinear(region))
    scan = _scan(array)
    result = explain(scan, model, "saliency", target="target", roi=roi)
    return model, scan, region, roi, result


FAST = {"steps": 20, "randomisation_stages": 0, "infidelity_samples": 8, "tta": 0}


def test_the_explanation_carries_its_roi_and_the_map_is_the_region(linear_case):
    _model, _scan, region, roi, result = linear_case
    assert result.target["kind"] == "roi" and result.target["roi_voxels"] == roi.sum()
    np.testing.assert_array_equal(result.roi, roi)
    # saliency of the ROI score: |W| on R, 0 elsewhere
    np.testing.assert_allclose(result.model_map, np.where(region, W, 0.0), atol=1e-6)


def test_deletion_and_insertion_of_the_roi_score_have_the_areas_computed_by_hand(linear_case):
    model, _scan, _region, roi, result = linear_case
    evidence = model_evidence(result, model, baseline="zero", **FAST)
    # zero baseline: the scan scores W * 100 + C * |M|, the baseline C * |M|
    assert evidence.settings["roi_score"]["input"] == pytest.approx(W * 100 + C * roi.sum(), rel=1e-5)
    assert evidence.settings["roi_score"]["baseline"] == pytest.approx(C * roi.sum(), rel=1e-5)
    # R's 100 voxels go first (50 per step of 5 %): the scaled score falls 1, 0.5, 0 and stays 0
    deletion = evidence.curves["deletion"]["y"]
    np.testing.assert_allclose(deletion, [1.0, 0.5] + [0.0] * 19, atol=1e-6)
    np.testing.assert_allclose(evidence.curves["insertion"]["y"], [0.0, 0.5] + [1.0] * 19, atol=1e-6)
    # a triangle of base 0.1 and height 1: 0.05; insertion mirrors it
    assert evidence["deletion_auc"].value == pytest.approx(0.05, abs=1e-6)
    assert evidence["insertion_auc"].value == pytest.approx(0.95, abs=1e-6)
    assert evidence["deletion_auc"].band == "pass" and evidence["insertion_auc"].band == "pass"
    # the top-1 % region is R (its 100 values tie): removing it removes the whole score
    assert evidence["prediction_drop"].value == pytest.approx(1.0, abs=1e-6)
    assert evidence["prediction_drop"].band == "pass"


def test_the_declared_blurred_baseline_gives_the_score_computed_by_hand(linear_case):
    model, scan, region, roi, result = linear_case
    evidence = model_evidence(result, model, **FAST)
    assert evidence["deletion_auc"].note == "baseline: blurred scan (Gaussian σ = 9 mm)"
    blurred = gaussian_filter(scan.array.astype(np.float64), sigma=9.0 / 2.0)  # 9 mm on 2 mm voxels
    expected = W * blurred[region].sum() + C * roi.sum()
    assert evidence.settings["roi_score"]["baseline"] == pytest.approx(expected, rel=1e-4)
    # once R's 100 voxels (10 %, two steps) are gone the scan scores as the baseline: 0
    deletion = np.asarray(evidence.curves["deletion"]["y"])
    assert deletion[0] == pytest.approx(1.0) and np.allclose(deletion[2:], 0.0, atol=1e-5)
    insertion = np.asarray(evidence.curves["insertion"]["y"])
    assert insertion[0] == pytest.approx(0.0, abs=1e-6) and np.allclose(insertion[2:], 1.0, atol=1e-5)
    assert evidence["prediction_drop"].value == pytest.approx(1.0, abs=1e-5)


def test_infidelity_is_zero_for_the_exact_gradient_of_a_linear_score_and_not_for_a_wrong_map(linear_case):
    model, _scan, _region, _roi, result = linear_case
    exact = model_evidence(result, model, **FAST)
    assert abs(exact["infidelity"].value) < 1e-9  # zero up to rounding (Captum may give -4e-12)
    # a map on a disjoint box explains none of the score's changes
    wrong = np.zeros(SHAPE, np.float32)
    wrong[0:2, 0:10, 0:10] = 1.0
    off = model_evidence(replace(result, model_map=wrong), model, **FAST)
    # the score's changes are left unexplained: their mean square (~3e-5 here), not zero
    assert off["infidelity"].value > 1e-6 and off["infidelity"].value > 1e5 * abs(exact["infidelity"].value)
    assert off["deletion_auc"].value > 0.4  # the score stays until R's turn comes


def test_regionremoval_of_half_the_regiondrops_half_the_score(linear_case):
    model, _scan, region, _roi, result = linear_case
    half = np.where(region, W, 0.0).astype(np.float32)
    half[2:7, 3:8, 4:6] *= 2  # these 50 voxels of R rank first
    evidence = model_evidence(replace(result, model_map=half), model, percent=5.0, baseline="zero", **FAST)
    # zero baseline, x = 1 in R: removing 50 of R's 100 voxels removes half of W * 100
    assert evidence["prediction_drop"].value == pytest.approx(0.5, abs=1e-6)
    assert evidence.curves["region_removal"]["y"] == pytest.approx([1.0, 0.5], abs=1e-6)


def test_cascading_randomisation_keeps_the_roi_question(linear_case, monkeypatch):
    from napari_mlmi_interp.explain import engine

    model, _scan, _region, roi, result = linear_case
    asked = []
    real = engine.explain
    monkeypatch.setattr(engine, "explain", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    seen = []
    prepare = engine._prepare_input
    monkeypatch.setattr(engine, "_prepare_input", lambda *a: seen.append(prepare(*a)[1]) or prepare(*a))
    # whatever W becomes, the map of the ROI score is |W| on R: same ranking, correlation 1.
    # (Had the randomised models been asked about their own segmentation instead of M,
    # the map would change with it.)
    evidence = model_evidence(result, model, **{**FAST, "randomisation_stages": 2})
    assert evidence.curves["randomisation"]["y"] == pytest.approx([1.0])  # one layer: one stage
    assert evidence["randomisation_final_rho"].band == "fail"
    # each randomised model was asked the same question: class 1 in M, summed
    assert len(asked) == 1 and asked[0]["target"] == 1 and asked[0]["roi_reduce"] == "sum"
    np.testing.assert_array_equal(asked[0]["roi"], roi)
    # ... about the scan itself, not the map's voxels taken for an image
    np.testing.assert_array_equal(seen[0].array, result.prediction.model_input.array)


def test_cascading_randomisation_changes_the_map_of_a_model_with_spatial_weights():
    rng = np.random.default_rng(0)
    scan = _scan(rng.standard_normal(SHAPE))
    model = load_model(_spec("small-conv"), module=SmallConv())
    roi = np.ones(SHAPE, bool)  # the class's score over the whole grid: every voxel matters
    result = explain(scan, model, "saliency", target=1, roi=roi)
    evidence = model_evidence(result, model, steps=4, randomisation_stages=2, infidelity_samples=4, tta=0)
    rho = evidence.curves["randomisation"]["y"]
    assert len(rho) == 2 and rho[-1] < 0.9
    assert evidence["randomisation_final_rho"].value == rho[-1]
    assert [s.split(" to ")[-1] for s in evidence.curves["randomisation"]["x"]] == ["head", "features"]


@pytest.fixture(scope="module")
def cube():
    """A 6 x 6 x 6 cube of ones in zeros, 5 voxels from every edge, segmented by a threshold."""
    array = np.zeros((16, 16, 16), np.float32)
    array[5:11, 5:11, 5:11] = 1.0
    scan = Volume(array, Geometry((16, 16, 16), SPACING, (0.0, 0.0, 0.0)), modality="MR")
    model = load_model(_spec("threshold"), module=Threshold())
    result = explain(scan, model, "saliency", target="target")  # M: the model's own segmentation
    return model, scan, result


NO_CHANGE = {"shift_voxels": 0, "intensity": 0.0, "noise": 0.0}


def _spread(model, result, **augmentation):
    return model_evidence(
        result, model, steps=2, randomisation_stages=0, infidelity_samples=2, tta=6, augmentation=augmentation
    )


def test_augmentation_spread_of_a_fixed_threshold(cube):
    model, _scan, result = cube
    assert result.target["roi"] == "model prediction" and result.target["roi_voxels"] == 216
    still = _spread(model, result, **NO_CHANGE)
    # 216 voxels of 8 mm³, every time; the same segmentation: Dice 1
    assert still.curves["tta_volume_ml"]["y"] == pytest.approx([216 * VOXEL_ML] * 7)
    assert still.curves["tta_dice"]["y"] == [1.0] * 7
    assert still["tta_volume_sd_ml"].value == 0.0 and still["tta_dice_sd"].value == 0.0
    assert still["tta_volume_sd_ml"].band == "pass" and still["tta_dice_sd"].band == "pass"
    # softmax of (0, 1 - 0.5) inside the cube: the class's probability is sigmoid(0.5)
    assert still["confidence"].value == pytest.approx(1 / (1 + np.exp(-0.5)), rel=1e-6)
    assert still["tta_sd"].value == 0.0
    # shifted copies are segmented, shifted back and compared: the cube is found in place
    shifted = _spread(model, result, shift_voxels=2, intensity=0.0, noise=0.0)
    assert shifted["tta_volume_sd_ml"].value == 0.0 and shifted.curves["tta_dice"]["y"] == [1.0] * 7
    # noise (SD 0.7 of the scan's SD 0.35 here) flips voxels near the threshold
    noisy = _spread(model, result, shift_voxels=0, intensity=0.0, noise=0.7)
    assert noisy["tta_volume_sd_ml"].value > 0 and noisy["tta_dice_sd"].value > 0
    assert all(d < 1 for d in noisy.curves["tta_dice"]["y"][1:])
    assert noisy.settings["augmentation"]["noise"] == 0.7


def test_augmented_copies_are_the_classifiers_and_shift_back_undoes_them():
    x = torch.zeros((1, 1, 12, 12, 12))
    x[0, 0, 4:8, 4:8, 4:8] = 1.0
    copies = augmented_copies(x, 5, shift_voxels=2, intensity=0.0, noise=0.0, seed=1)
    assert any(any(c.shifts) for c in copies)
    for c in copies:
        moved = c.tensor[0, 0].numpy()
        z, y, xx = (4 + s for s in c.shifts)
        assert moved[z : z + 4, y : y + 4, xx : xx + 4].sum() == 64  # moved by +shift voxels
        np.testing.assert_array_equal(shift_back(moved, c.shifts), x[0, 0].numpy())


def test_an_unknown_roi_or_another_one_gives_na_with_the_reason(linear_case):
    model, _scan, _region, roi, result = linear_case
    unknown = model_evidence(replace(result, roi=None), model, **FAST)
    assert all(unknown[k].value is None and unknown[k].band == "n/a" for k in MODEL_FIGURES)
    assert "not known" in unknown["deletion_auc"].note
    # passed explicitly, it is used
    given = model_evidence(replace(result, roi=None), model, roi=roi, **FAST)
    assert given["deletion_auc"].value == pytest.approx(
        model_evidence(result, model, **FAST)["deletion_auc"].value
    )
    other = roi.copy()
    other[0] = True
    wrong = model_evidence(replace(result, roi=None), model, roi=other, **FAST)
    assert "not the same question" in wrong["deletion_auc"].note


def test_the_roi_survives_the_result_cache(tmp_path, linear_case):
    model, scan, _region, roi, _result = linear_case
    cache = ResultCache(tmp_path / "cache")
    first = explain(scan, model, "saliency", target="target", roi=roi, cache=cache)
    hit = explain(scan, model, "saliency", target="target", roi=roi, cache=cache)
    assert hit.provenance.get("cache") == "hit"
    np.testing.assert_array_equal(hit.roi, first.roi)


def test_the_new_figures_are_in_the_catalogue_with_bands():
    assert FIGURES_BY_ELEMENT["actionability"][-2:] == ("tta_volume_sd_ml", "tta_dice_sd")
    assert FIGURES["tta_volume_sd_ml"].unit == "mL" and FIGURES["tta_volume_sd_ml"].element == "actionability"
    assert "ROI" in FIGURES["deletion_auc"].definition and "ROI" in FIGURES["prediction_drop"].definition
    band = DEFAULT_BANDS["tta_dice_sd"]
    assert band.judge(0.01) == "pass" and band.judge(0.03) == "warn" and band.judge(0.1) == "fail"


@pytest.mark.slow
def test_the_demo_segmenter_gets_numbers_on_every_model_figure(tmp_path):
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    model = resolve_model("lesion-segmenter")
    result = explain(sample.scan, model, "saliency", target="lesion", roi=sample.mask.array > 0)
    evidence = model_evidence(result, model, steps=8, randomisation_stages=2, infidelity_samples=4, tta=3)
    for key in MODEL_FIGURES:
        assert evidence[key].value is not None and np.isfinite(evidence[key].value), key
        assert evidence[key].band != "n/a", key
    # saliency on the trained segmenter is faithful to its lesion score
    assert evidence["deletion_auc"].value < evidence["insertion_auc"].value
    assert evidence["prediction_drop"].value > 0.3
    assert 0.5 < evidence["confidence"].value <= 1.0
    out = evidence.to_dict()
    assert set(out["actionability"]) >= {"tta_volume_sd_ml", "tta_dice_sd", "prediction_drop"}
    json.dumps(out)  # JSON-ready


@pytest.fixture(scope="module")
def linear_files(tmp_path_factory, linear_case):
    """The region model as a TorchScript file with its spec, its scan and its ROI as NIfTI files."""
    from napari_mlmi_interp.io import save

    model, scan, _region, roi, _result = linear_case
    folder = tmp_path_factory.mktemp("linear")
    weights = folder / "region.pt"
    torch.jit.script(model.module).save(str(weights))
    spec = folder / "region.json"
    spec.write_text(
        json.dumps(
            {
                "name": "region-linear",
                "task": "segmentation",
                "classes": ["background", "target"],
                "format": "torchscript",
                "weights": str(weights),
                "normalization": {"kind": "none"},
            }
        )
    )
    scan_path = save(scan, folder / "scan.nii.gz")
    roi_path = save(scan.with_array(roi.astype(np.uint8)), folder / "roi.nii.gz")
    return folder, spec, scan_path, roi_path


def test_explain_evidence_json_has_numbers_for_a_segmentation_target(linear_files, capsys):
    from napari_mlmi_interp.cli import main

    folder, spec, scan_path, roi_path = linear_files
    args = ["explain", str(scan_path), "--model", str(spec), "--method", "saliency", "--target", "target"]
    args += ["--roi", str(roi_path), "--out", str(folder / "out"), "--json", "--evidence", "quick", "--quiet"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    evidence = out["evidence"]
    assert out["target"]["kind"] == "roi"
    for key in MODEL_FIGURES:
        assert evidence[key] is not None, (key, evidence["notes"])
    # the known answers of the region model (x = 1 in R, R first: 10 % of the grid)
    assert evidence["prediction_drop"] == pytest.approx(1.0, abs=1e-5)
    assert evidence["curves"]["deletion"]["y"][-1] == pytest.approx(0.0, abs=1e-6)
    # localization against the ROI explained: the map (|W| on R) lies inside M
    assert evidence["pointing_game"] is True and evidence["peak_to_roi_mm"] == 0
    # R is fixed in space, the scan moves under augmentation: the segmentation changes
    assert evidence["by_element"]["actionability"]["tta_dice_sd"] > 0
    # the provenance file keeps the same figures
    with open(out["provenance"]) as fh:
        provenance = json.load(fh)
    assert provenance["provenance"]["evidence"]["deletion_auc"] == evidence["deletion_auc"]
    # the effort and what the localization measures are stated beside the figures
    assert evidence["settings"]["effort"] == "quick" and evidence["settings"]["steps"] == 10
    assert evidence["settings"]["localization_region"] == "the explained ROI"
    assert evidence["settings"]["augmentation"] == {
        "shift_voxels": 2,
        "intensity": 0.05,
        "noise": 0.02,
        "seed": 0,
    }


def test_explain_evidence_auto_picks_the_effort_that_fits_and_says_so(linear_files, capsys):
    from napari_mlmi_interp.cli import main

    folder, spec, scan_path, roi_path = linear_files
    args = ["explain", str(scan_path), "--model", str(spec), "--method", "saliency", "--target", "target"]
    args += ["--roi", str(roi_path), "--out", str(folder / "auto"), "--json", "--evidence", "auto"]
    assert main(args) == 0
    captured = capsys.readouterr()
    settings = json.loads(captured.out)["evidence"]["settings"]
    # a 1,000-voxel linear model: the full effort fits 10 minutes, priced by the map's own time
    assert settings["effort"] == "full" and settings["steps"] == 20
    assert settings["effort_estimate_basis"] == "the map's attribution time"
    assert settings["effort_passes"]["forward"] > 0 and settings["effort_estimate_s"] < 600
    assert "evidence at the full effort (20 curve steps" in captured.err


def test_batch_scores_a_segmenter_without_a_case_roi_and_with_model_figures(linear_files):
    from napari_mlmi_interp.cohort.batch import run_case
    from napari_mlmi_interp.cohort.manifest import Case

    folder, spec, scan_path, _roi_path = linear_files
    case = Case("seg", scan_path)
    plain = run_case(case, model=str(spec), methods=["saliency"], out=str(folder / "b1"), target="target")
    assert plain["status"] == "ok", plain.get("error")
    figures = plain["methods"]["saliency"]["figures"]
    # no case ROI: scored against the ROI explained (the model's own segmentation), and said so
    assert figures["pointing_game"] is not None and figures["auroc"] is not None
    assert any("explained ROI (model prediction)" in n for n in plain["notes"])
    assert "deletion_auc" not in figures  # the model figures only when asked for
    full = run_case(
        case, model=str(spec), methods=["saliency"], out=str(folder / "b2"), target="target", evidence="quick"
    )
    figures = full["methods"]["saliency"]["figures"]
    for key in MODEL_FIGURES:
        assert figures[key] is not None, key
    assert full["methods"]["saliency"]["figures"]["prediction_drop"] == pytest.approx(1.0, abs=1e-5)


def test_the_sidebar_session_shows_and_stores_a_segmenters_model_figures(tmp_path, linear_case):
    from napari_mlmi_interp.framework.session import MODEL_ELEMENTS, AssessmentSession
    from napari_mlmi_interp.store import StudyStore

    model, scan, _region, _roi, result = linear_case
    session = AssessmentSession("ana", opener=StudyStore)
    shown = []
    session.evidence_changed.connect(shown.append)
    errors = []
    session.error.connect(errors.append)
    assert session.open_store(tmp_path / "study.sqlite")
    session.select(result, model=model, scan=scan)
    request = session.model_request()
    steps = []
    assessment = request.compute(progress=lambda done, total: steps.append((done, total)))
    assert steps[-1][0] == steps[-1][1]  # every phase reported
    session.show(session.map_assessment().merged(assessment))
    cards = session.assessment.by_element()
    for element in MODEL_ELEMENTS:
        values = {f.key: f.value for f in cards[element] if f.key != "model_kind"}
        assert values and all(v is not None for v in values.values()), (element, values)
    assert session.assessment["prediction_drop"].text() == "1"
    assert session.assessment["tta_volume_sd_ml"].text().endswith(" mL")
    assert session.run_id is not None, errors
    stored = session.store.evidence(session.run_id)
    assert stored["deletion_auc"]["band"] == "pass" and "tta_dice_sd" in stored
    assert shown and shown[-1] is session.assessment
    session.close()


def test_localization_against_the_explained_roi_says_what_it_measures(linear_case):
    """A map of "class T in M" judged against M itself keeps its figures, and says so."""
    from napari_mlmi_interp.framework import map_evidence
    from napari_mlmi_interp.framework.evidence.from_map import EXPLAINED_ROI_NOTE, against_explained_roi

    _model, scan, region, roi, result = linear_case
    same = against_explained_roi(map_evidence(result.native, roi=roi, scan=scan), roi, result.roi)
    localization = same.by_element()["localization"]
    assert localization and all(EXPLAINED_ROI_NOTE in f.note for f in localization)
    assert same.settings["localization_region"] == "the explained ROI"
    assert same["pointing_game"].band == "pass"  # the values and bands are kept
    # an independent true region (here R, inside M but not M) is a different question: no note
    other = against_explained_roi(map_evidence(result.native, roi=region, scan=scan), region, result.roi)
    assert all(EXPLAINED_ROI_NOTE not in f.note for f in other.by_element()["localization"])
    assert "localization_region" not in other.settings


class AlongFirstAxis(torch.nn.Module):
    """Class-1 logit = W * x * i, i the voxel's index along the model's first spatial axis."""

    def forward(self, x):
        i = torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
        one = W * x[:, 0] * i[:, 0]
        return torch.stack([torch.zeros_like(one), one], dim=1)


def test_roi_score_on_an_anisotropic_cropped_xyz_grid_is_the_one_computed_by_hand():
    """Axis order, crop offset and the blur's per-axis sigma of the ROI score, on a model that
    sees (x, y, z) arrays cropped to the foreground of an anisotropic scan."""
    shape, spacing = (10, 12, 14), (2.0, 1.0, 1.5)  # z, y, x
    rng = np.random.default_rng(4)
    array = rng.uniform(0.0, 0.1, shape)
    array[2:8, 3:10, 4:12] += 1.0  # the foreground the crop keeps
    array[2:8, 3:10, 4:12] += 2.0 * (np.arange(6) % 2)[:, None, None]  # stripes along z: the blur's z
    scan = Volume(array.astype(np.float32), Geometry(shape, spacing, (0.0, 0.0, 0.0)), modality="MR")
    spec = ModelSpec.from_dict(
        {
            "name": "xyz-crop",
            "task": "segmentation",
            "classes": ["background", "target"],
            "input": {"axes": "xyz", "crop": {"to": "foreground", "threshold": 0.2}},
            "normalization": {"kind": "none"},
        }
    )
    model = load_model(spec, module=AlongFirstAxis())
    roi = np.zeros(shape, bool)
    roi[3:6, 4:8, 5:11] = True
    result = explain(scan, model, "saliency", target="target", roi=roi)
    assert result.prediction.model_input.crop_box == ((2, 8), (3, 10), (4, 12))
    x_index = np.arange(shape[2])[None, None, :] - 4  # the model's first axis is x, from the crop
    crop = (slice(2, 8), slice(3, 10), slice(4, 12))
    from napari_mlmi_interp.framework.settings import DEFAULT_SETTINGS

    # a 1.5 mm blur: (0.75, 1.5, 1) voxels along z, y, x; z and x swapped would move the score 3 %
    settings = DEFAULT_SETTINGS.with_(blur_sigma_mm=1.5)
    evidence = model_evidence(
        result, model, steps=4, randomisation_stages=0, infidelity_samples=2, tta=0, settings=settings
    )
    expected_input = W * float((array * x_index)[roi].sum())
    assert evidence.settings["roi_score"]["input"] == pytest.approx(expected_input, rel=1e-5)
    blurred = np.zeros(shape)
    blurred[crop] = gaussian_filter(array[crop].astype(np.float32).astype(np.float64), sigma=(0.75, 1.5, 1.0))
    expected_base = W * float((blurred * x_index)[roi].sum())
    assert evidence.settings["roi_score"]["baseline"] == pytest.approx(expected_base, rel=1e-4)
    swapped = np.zeros(shape)
    swapped[crop] = gaussian_filter(array[crop].astype(np.float32).astype(np.float64), sigma=(1.0, 1.5, 0.75))
    assert abs(W * float((swapped * x_index)[roi].sum()) - expected_base) > 0.01 * abs(expected_base)
    # the map on the scan's grid: W * i inside the ROI, zero outside
    np.testing.assert_allclose(result.native.array, np.where(roi, abs(W) * x_index, 0.0), atol=1e-5)
