"""The shipped demo zoo: it loads, it works on fresh subjects, and its prototypes are real patches."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_mlmi_interp.metrics import auroc, dice  # noqa: E402
from napari_mlmi_interp.models import builtin_models, load_model, predict, preprocessor_for  # noqa: E402
from napari_mlmi_interp.models.registry import zoo_dir  # noqa: E402
from napari_mlmi_interp.synthetic import make_shortcut_case, make_subject, split_seeds, template_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO = {"lesion-classifier", "lesion-protonet", "lesion-segmenter", "shortcut-classifier"}
# test-split seeds that train_zoo.py's metrics.json did not use (it used the first 100)
FRESH = split_seeds("test", 124)[100:]


@pytest.fixture(scope="module")
def zoo():
    return {s.name: load_model(s) for s in builtin_models()}


@pytest.fixture(scope="module")
def fresh_subjects():
    return [make_subject(seed) for seed in FRESH]


def test_zoo_is_listed_with_cards_and_hashes(zoo):
    assert set(zoo) == ZOO
    for name, model in zoo.items():
        assert len(model.sha256) == 64
        assert Path(model.spec.card).is_file(), f"{name} has no model card"
        assert "Demonstration only" in Path(model.spec.card).read_text()
    assert zoo["lesion-protonet"].spec.prototype is True
    assert not zoo["lesion-classifier"].spec.prototype


def test_classifiers_separate_fresh_test_subjects(zoo, fresh_subjects):
    labels = [s.label for s in fresh_subjects]
    assert 6 <= sum(labels) <= 18
    for name, floor in (("lesion-classifier", 0.85), ("lesion-protonet", 0.8)):
        scores = [float(predict(s.scan, zoo[name]).probabilities[1]) for s in fresh_subjects]
        assert auroc(labels, scores) >= floor, name


def test_segmenter_finds_lesions_on_the_native_grid(zoo, fresh_subjects):
    positives = [s for s in fresh_subjects if s.label]
    scores = []
    for s in positives:
        pred = predict(s.scan, zoo["lesion-segmenter"])
        assert pred.segmentation.geometry is s.scan.geometry
        scores.append(dice(s.mask.array > 0, pred.segmentation.array > 0))
    assert np.mean(scores) >= 0.6


def test_shortcut_model_is_right_for_the_wrong_reason(zoo):
    case = make_shortcut_case()
    untagged = make_subject(case.seed, n_lesions=1, marker=False)
    with_tag = predict(case.scan, zoo["shortcut-classifier"])
    without = predict(untagged.scan, zoo["shortcut-classifier"])
    assert case.label == 1 and with_tag.label == "lesion"
    assert without.probabilities[1] < with_tag.probabilities[1] - 0.3
    # the honest classifier sees the lesion either way
    assert predict(untagged.scan, zoo["lesion-classifier"]).label == "lesion"


def test_prototypes_are_their_source_training_patches(zoo):
    model = zoo["lesion-protonet"]
    meta = json.loads(Path(model.spec.prototype_metadata).read_text())
    patches = np.load(Path(model.spec.prototype_metadata).parent / meta["patches"])["patches"]
    assert len(meta["prototypes"]) == model.module.n_prototypes == patches.shape[0]
    assert np.isfinite(patches.astype(np.float32)).all()
    pre = preprocessor_for(model)
    grid = pre.grid_for(template_grid())
    for k in (0, len(meta["prototypes"]) - 1):  # one prototype of each class
        p = meta["prototypes"][k]
        assert p["source_seed"] in split_seeds("train", 480)
        sub = make_subject(p["source_seed"], grid=grid)
        assert ("lesion" if sub.label else "no lesion") == p["class"]
        x = pre.forward(sub.scan, grid=grid)
        with torch.no_grad():
            z = model.module.latent(x.tensor())[0]
        d, h, w = p["latent_index"]
        np.testing.assert_allclose(
            z[:, d, h, w].numpy(), model.module.prototypes[p["index"], :, 0, 0, 0].detach().numpy(), atol=1e-5
        )
        c = np.round(p["model_grid_voxel"]).astype(int)
        half = 12
        vol = np.pad(x.array[0], half, constant_values=float(x.array[0].min()))
        axial = vol[c[0] + half, c[1] : c[1] + 2 * half, c[2] : c[2] + 2 * half]
        np.testing.assert_allclose(patches[p["index"], 0].astype(np.float32), axial, atol=2e-3)
        np.testing.assert_allclose(grid.to_lps(p["model_grid_voxel"]), p["lps_mm"], atol=0.01)


def test_shipped_metrics_meet_the_targets():
    m = json.loads((zoo_dir() / "metrics.json").read_text())
    assert m["config"]["quick"] is False and m["n_test"] >= 100
    assert m["classifier"]["auroc"] >= 0.90
    assert m["protonet"]["auroc"] >= 0.85
    assert m["shortcut"]["accuracy_with_marker"] >= 0.9
    assert m["shortcut"]["accuracy_without_marker"] <= m["shortcut"]["accuracy_with_marker"] - 0.15


@pytest.mark.slow
def test_training_script_is_deterministic(tmp_path):
    sys.path.insert(0, str(ROOT / "sample_data"))
    try:
        import train_zoo
    finally:
        sys.path.pop(0)
    digests = []
    for run in ("a", "b"):
        metrics = train_zoo.main(["--quick", "--out", str(tmp_path / run)])
        assert set(metrics) >= {"classifier", "protonet", "segmenter", "shortcut", "timings"}
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((tmp_path / run).glob("*.pt"))
            }
        )
        assert (tmp_path / run / "lesion-classifier.md").is_file()
    assert digests[0] == digests[1] and len(digests[0]) == 4
