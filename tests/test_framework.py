"""The framework: goal -> elements -> methods, evidence with bands, and whether the evidence
tells good explanations from bad ones on the demo zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch  # noqa: F401 - a hard dependency: a broken install fails, not skips

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.framework import (
    DEFAULT_BANDS,
    Goal,
    elements_for,
    load_bands,
    map_evidence,
    model_evidence,
    recommended_methods,
)
from napari_mlmi_interp.framework.study import ReaderStudy
from napari_mlmi_interp.io import save
from napari_mlmi_interp.sample import LESION_CENTRE_LPS, make_sample

LOCALIZATION = ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc", "topk_dice")


@pytest.fixture(scope="module")
def sample():
    return make_sample()


@pytest.fixture(scope="module")
def classifier():
    from napari_mlmi_interp.models import resolve_model

    return resolve_model("lesion-classifier")


def blob_map(volume, centre_lps, radius_mm=6.0):
    idx = np.indices(volume.shape).reshape(3, -1).T
    d = np.linalg.norm(volume.geometry.to_lps(idx) - np.asarray(centre_lps), axis=1).reshape(volume.shape)
    return volume.with_array(np.exp(-((d / radius_mm) ** 2)).astype(np.float32), name="map")


# -- the guide -------------------------------------------------------------------------------------
def test_goal_to_elements_to_methods():
    assert elements_for("developer", "verify") == ("localization", "model_transparency")
    assert Goal(reader="researcher").elements == (
        "localization",
        "visual_recognizability",
        "physical_attribution",
        "model_transparency",
        "actionability",
    )
    assert Goal(elements=("actionability", "localization")).elements == ("localization", "actionability")
    with pytest.raises(ValueError, match="reader must be one of"):
        elements_for("patient", "verify")
    with pytest.raises(ValueError, match="unknown elements"):
        Goal(elements=("beauty",))
    recs = recommended_methods(("localization", "model_transparency"))
    assert all(set(r.served) & {"localization", "model_transparency"} for r in recs)
    # without a measured pass: cheaper (forward + 2 backward passes) first; as cheap: more relevant first
    top = [(r.estimate.forwards + 2 * r.estimate.backwards, -len(r.served)) for r in recs if r.recommended]
    assert top == sorted(top)
    assert all(not r.method.needs_layer for r in recommended_methods(("localization",), has_layer=False))


def test_bands_judge_and_load(tmp_path):
    band = DEFAULT_BANDS["peak_to_roi_mm"]
    assert [band.judge(v) for v in (0.0, 5.0, 10.0, 20.0, None)] == ["pass", "pass", "warn", "fail", "n/a"]
    path = tmp_path / "bands.json"
    path.write_text(json.dumps({"peak_to_roi_mm": {"warn": 8.0}, "gini": {"pass": 0.9}}))
    loaded = load_bands(path)
    assert loaded["peak_to_roi_mm"].judge(10.0) == "fail" and loaded["gini"].judge(0.85) == "warn"
    with pytest.raises(ValueError, match="no figure called 'peak_to_roi'"):
        load_bands({"peak_to_roi": {"pass": 1}})
    # bands that follow a setting cannot be set apart from it (they would contradict their pair)
    with pytest.raises(ValueError, match="set tolerance_mm"):
        load_bands({"peak_to_roi_mm": {"pass": 1.0, "warn": 2.0}})
    with pytest.raises(ValueError, match="pointing_game band cannot be set"):
        load_bands({"pointing_game": {"pass": 0}})
    with pytest.raises(ValueError, match="set topk_dice instead"):
        load_bands({"topk_iou": {"pass": 0.5}})
    with pytest.raises(InputError, match="no figure called"):  # a user's error: one line in the CLI
        load_bands({"dice": {"pass": 0.5}})
    # a file that is not JSON, a band that is no object, a limit that is no number: one line each
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: not JSON"):
        load_bands(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="must be a JSON object"):
        load_bands(bad)
    with pytest.raises(InputError, match="'gini' must be an object"):
        load_bands({"gini": 0.9})
    with pytest.raises(InputError, match="limits of 'auroc' must be numbers"):
        load_bands({"auroc": {"pass": "high"}})


# -- one vocabulary, one catalogue ---------------------------------------------------------------------
def test_the_figure_catalogue_is_keyed_by_the_vocabulary():
    from napari_mlmi_interp import vocabulary
    from napari_mlmi_interp.framework.evidence import FIGURES, LOCALIZATION_FIGURES

    assert tuple(FIGURES) == vocabulary.FIGURE_NAMES  # same names, same order
    assert {k: info.element for k, info in FIGURES.items()} == vocabulary.FIGURE_ELEMENT
    assert tuple(vocabulary.FIGURES_BY_ELEMENT) == vocabulary.ELEMENTS
    assert vocabulary.FIGURES_BY_ELEMENT["localization"] == LOCALIZATION_FIGURES
    assert set(DEFAULT_BANDS) <= set(vocabulary.FIGURE_NAMES)
    assert all(info.label and info.definition for info in FIGURES.values())


def test_the_vocabulary_imports_nothing_of_the_package():
    import ast
    import inspect

    from napari_mlmi_interp import vocabulary

    tree = ast.parse(inspect.getsource(vocabulary))
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imported), [
        ast.unparse(n) for n in imported
    ]


def test_maps_and_regions_on_other_grids_are_the_users_error(sample):
    from napari_mlmi_interp.io import Geometry, Volume

    amap = blob_map(sample.scan, LESION_CENTRE_LPS)
    with pytest.raises(InputError, match=r"true region .* must be on the same grid"):
        map_evidence(amap, roi=np.ones((3, 4, 5), bool))
    with pytest.raises(InputError, match=r"the scan .* must be on the same grid"):
        small = Volume(np.zeros((3, 4, 5), np.float32), Geometry((3, 4, 5), (1, 1, 1), (0, 0, 0)))
        map_evidence(amap, scan=small)


def test_the_old_evidence_import_path_still_works():
    from napari_mlmi_interp.framework import evidence
    from napari_mlmi_interp.framework.evidence import bands, figures, from_map, from_model

    assert evidence.Band is bands.Band and evidence.load_bands is bands.load_bands
    assert evidence.FIGURES is figures.FIGURES and evidence.Figure is figures.Figure
    assert evidence.map_evidence is from_map.map_evidence
    assert evidence.model_evidence is from_model.model_evidence
    assert evidence.score_function is from_model.score_function
    assert map_evidence is evidence.map_evidence and model_evidence is evidence.model_evidence


# -- the evidence tells good from bad ------------------------------------------------------------------
def test_a_map_on_the_lesion_beats_a_map_on_the_skull_on_every_localization_figure(sample):
    skull = (LESION_CENTRE_LPS[0] - 45.0, LESION_CENTRE_LPS[1], LESION_CENTRE_LPS[2])
    roi = sample.mask.array > 0
    good = map_evidence(blob_map(sample.scan, LESION_CENTRE_LPS), roi=roi, scan=sample.scan)
    bad = map_evidence(blob_map(sample.scan, skull), roi=roi, scan=sample.scan)
    for key in LOCALIZATION:
        assert float(good[key].value) > float(bad[key].value), key
    assert good["peak_to_roi_mm"].value == 0 < bad["peak_to_roi_mm"].value
    assert not good.flagged("localization") and bad.flagged("localization")
    # physical attribution: the good map's peak is at the lesion centre, its region a 6 mm ball
    np.testing.assert_allclose(good["peak_lps_mm"].value, LESION_CENTRE_LPS, atol=max(sample.scan.spacing))
    assert 0.2 < good["region_volume_ml"].value < 1.5
    # without a true region the localization figures say why they are missing
    plain = map_evidence(blob_map(sample.scan, LESION_CENTRE_LPS))
    assert plain["pointing_game"].band == "n/a" and "true region" in plain["pointing_game"].note


@pytest.mark.slow
def test_shortcut_explanation_is_flagged_by_localization():
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.synthetic import make_shortcut_case

    case = make_shortcut_case()
    shortcut = explain(case.scan, resolve_model("shortcut-classifier"), "gradcam", target="lesion")
    evidence = map_evidence(shortcut.native, roi=case.mask.array > 0, scan=case.scan)
    assert evidence.flagged("localization")
    assert evidence["pointing_game"].value is False and evidence["pointing_game"].band == "fail"
    assert evidence["peak_to_roi_mm"].value > 20 and evidence["peak_to_roi_mm"].band == "fail"


@pytest.mark.slow
def test_randomisation_fails_an_edge_detector_and_passes_ig_on_the_demo_classifier(sample, classifier):
    from scipy.ndimage import sobel

    from napari_mlmi_interp import metrics as M
    from napari_mlmi_interp.explain import explain

    ig = explain(sample.scan, classifier, "integrated_gradients", target="lesion", params={"n_steps": 16})
    evidence = model_evidence(ig, classifier, percent=1.0, steps=10, infidelity_samples=8, tta=4)
    rho = evidence["randomisation_final_rho"]
    assert rho.band == "pass", evidence.curves["randomisation"]
    curve = evidence.curves["randomisation"]["y"]
    assert len(curve) == 5 and curve[-1] < 0.3
    # an edge detector on the model's input: a plausible-looking "explanation" that ignores the model
    x = ig.prediction.model_input.array[0]
    edges = np.sqrt(sum(sobel(x, axis=k) ** 2 for k in range(3)))
    result = M.randomisation_test(classifier.module, lambda module: edges, max_stages=5)
    assert DEFAULT_BANDS["randomisation_final_rho"].judge(result.final) == "fail"
    assert min(result.correlations) > 0.99
    # the rest of the model evidence: IG is faithful on this model
    assert evidence["deletion_auc"].value < evidence["insertion_auc"].value
    assert evidence["prediction_drop"].value > 0.3 and evidence["prediction_drop"].band == "pass"
    assert evidence["model_kind"].band == "warn"  # a black box
    assert evidence["infidelity"].value >= 0


# -- evaluate: any map file ------------------------------------------------------------------------------
def test_evaluate_command_scores_a_map_file_against_an_roi(sample, tmp_path, capsys):
    amap = blob_map(sample.scan, LESION_CENTRE_LPS)
    map_path = save(amap, tmp_path / "map.nii.gz")
    roi_path = save(sample.mask, tmp_path / "roi.nii.gz")
    scan_path = save(sample.scan, tmp_path / "scan.nii.gz")
    labels_path = save(sample.tissue, tmp_path / "tissue.nii.gz")
    args = [
        "evaluate",
        str(map_path),
        "--roi",
        str(roi_path),
        "--scan",
        str(scan_path),
        "--labels",
        str(labels_path),
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "pointing_game",
        "relevance_mass_accuracy",
        "relevance_rank_accuracy",
        "auroc",
        "topk_dice",
        "peak_to_roi_mm",
        "components_90",
        "gini",
        "entropy",
        "peak_lps_mm",
        "centroid_lps_mm",
        "region_volume_ml",
    ):
        assert key in out, key
    expected = map_evidence(amap, roi=sample.mask.array > 0, scan=sample.scan, labels=sample.tissue.array)
    assert out["pointing_game"] is True and out["peak_to_roi_mm"] == 0
    assert out["auroc"] == pytest.approx(expected["auroc"].value, abs=1e-5)
    assert out["components_90"] == 1 and isinstance(out["components_90"], int)
    assert out["by_element"]["localization"]["pointing_game"] is True
    assert set(out["label_mass"]) <= {"unlabelled", "label 1", "label 2"}
    assert out["notes"] == []
    # an ROI on a coarser grid (another tool's export) is resampled by position, and said so
    from napari_mlmi_interp.models.preprocessing import resample_grid, resample_to_grid

    coarse = resample_grid(sample.mask.geometry, (3.0, 3.0, 3.0))
    array = resample_to_grid(sample.mask.array, sample.mask.geometry, coarse, interpolation="nearest")
    from napari_mlmi_interp.io.volume import Volume

    coarse_path = save(Volume(array, coarse, name="roi"), tmp_path / "roi_3mm.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(coarse_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pointing_game"] is True and "resampled" in out["notes"][0]
    # a human-readable table without --json
    assert main(["evaluate", str(map_path), "--roi", str(roi_path)]) == 0
    text = capsys.readouterr().out
    assert "Localization" in text and "pointing game" in text and "[pass]" in text


def test_evaluate_refuses_an_roi_elsewhere_in_space(sample, tmp_path, capsys):
    from napari_mlmi_interp.io.volume import Geometry, Volume

    map_path = save(blob_map(sample.scan, LESION_CENTRE_LPS), tmp_path / "map.nii.gz")
    far = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (5000.0, 5000.0, 5000.0))
    roi_path = save(Volume(np.ones((4, 4, 4), np.uint8), far), tmp_path / "far.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(roi_path)]) == 2
    assert "does not overlap" in capsys.readouterr().err


# -- reader studies ------------------------------------------------------------------------------------
def write_study(tmp_path, sample):
    scans = tmp_path / "scans"
    scans.mkdir()
    save(sample.scan, scans / "a.nii.gz")
    save(sample.scan, scans / "b.nii.gz")
    save(sample.mask, scans / "a_roi.nii.gz")
    study = {
        "study": "pilot",
        "cases": [{"scan": "scans/a.nii.gz", "roi": "scans/a_roi.nii.gz"}, "scans/b.nii.gz"],
        "conditions": [
            {"model": "lesion-classifier", "method": "gradcam", "target": "lesion"},
            {"model": "lesion-classifier", "method": "saliency", "target": "lesion"},
        ],
        "goal": {"task": "classification", "reader": "clinician", "purpose": "trust"},
    }
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    return path


def test_reader_study_order_is_per_reader_and_resumable(tmp_path, sample):
    study = ReaderStudy.load(write_study(tmp_path, sample))
    assert len(study.items) == 4 and study.goal.purpose == "trust"
    alice, bob = study.order("alice"), study.order("bob")
    assert [i.id for i in alice] == [i.id for i in study.order("alice")]  # stable for one reader
    assert sorted(i.id for i in alice) == sorted(i.id for i in bob)
    assert [i.id for i in alice] != [i.id for i in bob]
    assert all("/" not in i.id and "a.nii" not in i.id for i in alice)  # ids carry no path
    pos, item = study.next("alice", set())
    assert pos == 0 and item == alice[0]
    pos, item = study.next("alice", {alice[0].id, alice[1].id})
    assert pos == 2 and item == alice[2]
    assert study.next("alice", {i.id for i in alice}) is None
    assert ReaderStudy.label(2) == "Explanation 3"


def test_reader_study_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        ReaderStudy.load(bad)
    bad.write_text(json.dumps({"study": "x", "cases": [{"scan": "missing.nii"}], "conditions": [{}]}))
    with pytest.raises(ValueError, match=r"missing\.nii does not exist"):
        ReaderStudy.load(bad)
    (tmp_path / "a.nii").write_bytes(b"")
    roster = {"study": "x", "cases": ["a.nii"], "conditions": [{"model": "m", "method": "saliency"}]}
    bad.write_text(json.dumps({**roster, "readers": "ana"}))
    with pytest.raises(ValueError, match="'readers' must be a list of reader names"):
        ReaderStudy.load(bad)
    bad.write_text(json.dumps({**roster, "readers": [" ana ", "ben"]}))
    assert ReaderStudy.load(bad).readers == ("ana", "ben")
