"""Targets (issue 15, item 4): class T inside mask M, ROIs by label name, no needless prediction.

Known answers on small segmenters whose logits are known functions of the input; the maps
are compared with maps made the long way (an explicit mask, a prior prediction).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.explain import ResultCache, explain
from napari_mlmi_interp.explain.targets import label_mask, match_class
from napari_mlmi_interp.io import Geometry, Volume, load, save
from napari_mlmi_interp.models import ModelSpec, load_model
from napari_mlmi_interp.models.predict import predict

CLASSES = ["background", "Left-Hippocampus", "Right-Hippocampus", "Thalamus-Proper*"]
#: class c's logit at each voxel is GAINS[c] times the voxel's value (LinearSeg)
GAINS = (0.0, 2.0, -3.0, 0.5)
GRID = Geometry((10, 12, 14), (1.5, 1.0, 1.0), (-5.0, 3.0, 7.0))


class LinearSeg(torch.nn.Module):
    """Logit of class c at a voxel = GAINS[c] x the voxel: d(score)/dx is known in closed form."""

    def forward(self, x):
        return torch.cat([g * x for g in GAINS], dim=1)


class ConvSeg(torch.nn.Module):
    """A small non-linear segmenter (3D convolutions), with a layer for Grad-CAM."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv3d(1, 6, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv3d(6, len(CLASSES), 3, padding=1),
        )

    def forward(self, x):
        return self.body(x)


class Counting(torch.nn.Module):
    """Counts full forwards (calls) of the model it wraps."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def _model(module: torch.nn.Module, **kw):
    spec = {"name": "seg", "task": "segmentation", "classes": CLASSES, "normalization": {"kind": "none"}}
    return load_model(ModelSpec.from_dict({**spec, **kw}), module=module.eval())


@pytest.fixture(scope="module")
def scan() -> Volume:
    return Volume(np.random.default_rng(3).normal(size=GRID.shape).astype(np.float32), GRID)


@pytest.fixture(scope="module")
def box() -> np.ndarray:
    roi = np.zeros(GRID.shape, np.uint8)
    roi[2:6, 3:8, 4:9] = 1
    return roi


# -- class names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("Right-Hippocampus", 2),  # exact
        ("left-hippocampus", 1),  # case
        ("thalamus proper", 3),  # punctuation ignored ("Thalamus-Proper*")
        ("thal", 3),  # a unique prefix
        ("RIGHT", 2),
        ("2", 2),  # an index as text
        (3, 3),
    ],
)
def test_class_by_name_or_index(name, index):
    from napari_mlmi_interp.explain.targets import class_index

    assert class_index(name, CLASSES, default=None) == index


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("Hippocampus", "close names: Left-Hippocampus, Right-Hippocampus"),  # neither exact nor prefix
        ("Hipocampus", "close names: Left-Hippocampus, Right-Hippocampus"),  # a typo
        ("Putamen", "target must be one of the classes (background, Left-Hippocampus"),  # nothing close
    ],
)
def test_bad_class_name_lists_close_names(name, said):
    with pytest.raises(InputError) as err:
        match_class(name, CLASSES)
    assert said in str(err.value) and repr(name) in str(err.value)


def test_ambiguous_prefix_is_refused_with_the_candidates():
    classes = ["bg", "Hippocampus-head", "Hippocampus-tail"]
    with pytest.raises(
        InputError, match=r"'hippo' matches several classes \(Hippocampus-head, Hippocampus-tail"
    ):
        match_class("hippo", classes)
    with pytest.raises(InputError, match=r"target index must be in 0\.\.3, got 4"):
        from napari_mlmi_interp.explain.targets import class_index

        class_index(4, CLASSES, default=None)


def test_label_mask_by_name_value_or_any_label():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0, :2] = 1
    labels[3, 4, :] = 2
    np.testing.assert_array_equal(label_mask(labels, "right-hippo", CLASSES), labels == 2)
    np.testing.assert_array_equal(label_mask(labels, 1, CLASSES), labels == 1)
    np.testing.assert_array_equal(label_mask(labels, None, CLASSES), labels > 0)
    with pytest.raises(InputError, match=r"no voxel of the label map holds label 3 \(Thalamus-Proper\*\)"):
        label_mask(labels, "Thalamus", CLASSES)


# -- class T inside mask M ---------------------------------------------------------------------------


def test_target_and_roi_together_score_only_that_class_inside_the_mask(scan, box):
    model = _model(LinearSeg())
    for name, k in (("right-hippocampus", 2), ("Left", 1)):
        # score = GAINS[k] * sum(x in ROI): its gradient is GAINS[k] in the ROI, 0 elsewhere
        sal = explain(scan, model, "saliency", target=name, roi=box, params={"abs": False})
        assert sal.target["class_index"] == k and sal.target["roi"] == "given mask"
        np.testing.assert_allclose(sal.native.array, GAINS[k] * box, atol=1e-6)
        # Integrated Gradients of a linear score: exactly GAINS[k] * x in the ROI (baseline 0)
        ig = explain(scan, model, "integrated_gradients", target=name, roi=box, params={"n_steps": 4})
        np.testing.assert_allclose(ig.native.array, GAINS[k] * scan.array * box, atol=1e-5)
        assert ig.provenance["completeness"]["score_input"] == pytest.approx(
            GAINS[k] * float(scan.array[box > 0].sum()), rel=1e-5
        )


def test_roi_label_is_the_models_own_segmentation_of_that_class(scan):
    model = _model(ConvSeg())
    seg = predict(scan, model).segmentation.array
    assert {1, 2} <= set(np.unique(seg).tolist()), "the fixture must segment both classes"
    by_label = explain(scan, model, "saliency", roi_label="left-hippo")
    by_mask = explain(scan, model, "saliency", target="Left-Hippocampus", roi=seg == 1)
    np.testing.assert_array_equal(by_label.native.array, by_mask.native.array)
    assert by_label.target["name"] == "Left-Hippocampus" and by_label.target["roi"] == "model prediction"
    # class 2's score inside class 1's segmentation
    cross = explain(scan, model, "saliency", target=2, roi_label=1)
    expected = explain(scan, model, "saliency", target=2, roi=seg == 1)
    np.testing.assert_array_equal(cross.native.array, expected.native.array)
    assert cross.target["roi_class"] == "Left-Hippocampus" and cross.target["name"] == "Right-Hippocampus"
    assert cross.target["roi"] == "model prediction of Left-Hippocampus"
    with pytest.raises(InputError, match="not both"):
        explain(scan, model, "saliency", roi=seg == 1, roi_label=1)
    with pytest.raises(InputError, match="ROI must be one of the classes"):
        explain(scan, model, "saliency", roi_label="Putamen")


def test_cache_keeps_roi_labels_apart(scan, tmp_path):
    model, cache = _model(ConvSeg()), ResultCache(tmp_path)
    one = explain(scan, model, "saliency", target=2, roi_label=1, cache=cache)
    two = explain(scan, model, "saliency", target=2, roi_label=2, cache=cache)
    assert not np.array_equal(one.native.array, two.native.array)
    again = explain(scan, model, "saliency", target=2, roi_label=1, cache=cache)
    assert again.provenance.get("cache") == "hit"
    np.testing.assert_array_equal(again.native.array, one.native.array)


# -- no needless prediction ------------------------------------------------------------------------


def test_mask_and_class_make_no_separate_prediction(scan):
    counted = Counting(ConvSeg())
    model = _model(counted, cam_layers=["inner.body.2"])
    # tuning="off": the calls are counted on the user's module, not on a tuned copy of it
    reference = predict(scan, model)
    mask = reference.segmentation.array == 1
    counted.calls = 0
    # before: the prediction first (it gives the ROI), then the method
    long_way = explain(scan, model, "saliency", target="Left-Hippocampus", tuning="off")
    assert counted.calls == 2
    counted.calls = 0
    short_way = explain(scan, model, "saliency", target="Left-Hippocampus", roi=mask, tuning="off")
    assert counted.calls == 1  # one full forward fewer
    np.testing.assert_array_equal(short_way.native.array, long_way.native.array)
    # the prediction comes from the method's own pass on the unperturbed input: the same
    pred = short_way.prediction
    assert pred.computed and pred.to_dict()["volumes_ml"] == reference.to_dict()["volumes_ml"]
    np.testing.assert_array_equal(pred.segmentation.array, reference.segmentation.array)
    assert pred.segmentation.geometry.same_grid(scan.geometry, atol_mm=1e-9)
    counted.calls = 0
    cam = explain(scan, model, "gradcam", target=1, roi=mask)
    assert counted.calls == 1
    np.testing.assert_array_equal(cam.prediction.segmentation.array, reference.segmentation.array)
    # Integrated Gradients: from its completeness check's pass on the input
    ig = explain(scan, model, "integrated_gradients", target=1, roi=mask, params={"n_steps": 3})
    np.testing.assert_array_equal(ig.prediction.segmentation.array, reference.segmentation.array)


def test_prediction_is_not_invented_when_the_method_never_sees_the_scan_itself(scan, box):
    counted = Counting(ConvSeg())
    model = _model(counted)
    counted.calls = 0
    params = {"nt_samples": 3, "nt_samples_batch_size": 1, "stdevs": 0.2}
    result = explain(scan, model, "smoothgrad", target=1, roi=box, params=params, tuning="off")
    assert counted.calls == 3  # the noisy samples only: no prediction was run
    pred = result.prediction
    assert not pred.computed and pred.segmentation is None
    said = pred.to_dict()
    assert said["computed"] is False and said["volumes_ml"] is None
    assert result.summary()["prediction"]["computed"] is False


def test_occlusion_on_a_tuned_copy_still_gives_the_prediction(scan, box):
    model = _model(ConvSeg())
    reference = predict(scan, model)
    params = {"window": 4, "stride": 4, "perturbations_per_eval": 2}
    result = explain(scan, model, "occlusion", target=1, roi=box, params=params)
    assert result.provenance["tuning"] == "channels_last_3d"  # the model ran as a copy
    np.testing.assert_array_equal(result.prediction.segmentation.array, reference.segmentation.array)


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("sample")
    assert main(["sample", str(out), "--json"]) == 0
    return {"scan": str(out / "sample_brain_t1.nii.gz"), "mask": str(out / "sample_brain_lesion_mask.nii.gz")}


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlmi-interp: error: "), err
    return err[0]


def test_cli_target_and_roi_by_name(sample, tmp_path, capsys):
    from napari_mlmi_interp.models import resolve_model

    base = ["explain", sample["scan"], "--model", "lesion-segmenter", "--method", "saliency", "--json"]
    assert main([*base, "--target", "LESION", "--roi", sample["mask"], "--out", str(tmp_path / "a")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["name"] == "lesion" and out["target"]["roi"] == "given mask"
    assert out["prediction"]["volumes_ml"]["lesion"] > 0  # from saliency's own pass
    (scan,) = load(sample["scan"])
    (written,) = load(out["map"])
    assert written.geometry.same_grid(scan.geometry, atol_mm=1e-4)
    # --roi-label: the ROI is the model's own segmentation of that class; it is the target too
    assert main([*base, "--roi-label", "les", "--out", str(tmp_path / "b")]) == 0
    by_label = json.loads(capsys.readouterr().out)
    assert by_label["target"]["name"] == "lesion" and by_label["target"]["roi"] == "model prediction"
    seg = predict(scan, resolve_model("lesion-segmenter")).segmentation
    labels_path = save(seg, tmp_path / "labels.nii.gz")
    mask_path = save(seg.with_array((seg.array == 1).astype(np.uint8)), tmp_path / "mask.nii.gz")
    # the same ROI from a label map, and as an explicit mask: the same map
    maps = [load(by_label["map"])[0].array]
    for extra in (["--roi-labels", str(labels_path), "--roi-label", "lesion"], ["--roi", str(mask_path)]):
        assert main([*base, *extra, "--target", "lesion", "--out", str(tmp_path / extra[0][2:])]) == 0
        maps.append(load(json.loads(capsys.readouterr().out)["map"])[0].array)
    np.testing.assert_allclose(maps[1], maps[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps[2], maps[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--target", "lesoin"], "target must be one of the classes, got 'lesoin'; close names: lesion"),
        (["--roi-label", "tumour"], "ROI must be one of the classes (background, lesion), got 'tumour'"),
        (["--roi-label", "lesion", "--roi", "MASK"], "give one ROI: --roi MASK, or --roi-label NAME"),
        (["--roi-labels", "MASK"], "--roi-labels LABELMAP needs --roi-label NAME (or --target NAME)"),
    ],
)
def test_cli_bad_targets_are_one_line(sample, tmp_path, capsys, extra, said):
    extra = [sample["mask"] if e == "MASK" else e for e in extra]
    args = ["explain", sample["scan"], "--model", "lesion-segmenter", "--method", "saliency"]
    assert main([*args, *extra, "--out", str(tmp_path)]) == 2
    assert said in _one_error(capsys)
    assert not list(Path(tmp_path).iterdir())


def test_cli_roi_label_with_a_classifier_is_refused(sample, tmp_path, capsys):
    args = ["explain", sample["scan"], "--model", "lesion-classifier", "--method", "saliency"]
    assert main([*args, "--roi-label", "lesion", "--out", str(tmp_path)]) == 2
    assert "--roi-label must be used with a segmentation model" in _one_error(capsys)


# -- a real segmenter on a real T1 (shared/data/brainchop) -----------------------------------------------


def _receptive_half_width(model_json: Path) -> int:
    """Voxels a MeshNet output sees on each side: the sum of (kernel - 1) / 2 x dilation, read from
    the Keras topology itself (not through the loader under test)."""
    layers = json.loads(model_json.read_text())["modelTopology"]["model_config"]["config"]["layers"]
    convs = [ly["config"] for ly in layers if ly["class_name"] == "Conv3D"]
    assert all(len(set(c["kernel_size"])) == 1 and len(set(c["dilation_rate"])) == 1 for c in convs)
    return sum((c["kernel_size"][0] - 1) // 2 * c["dilation_rate"][0] for c in convs)


@pytest.fixture(scope="module")
def real_explained(shared_brainchop, tmp_path_factory):
    """The acceptance command on the real T1: saliency of the hippocampus score inside a 20³ box
    at the centre of the head (one forward and one backward at 256³)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("real")
    t1 = shared_brainchop / "t1_crop.nii.gz"
    (scan,) = load(t1)
    box = np.zeros(scan.shape, np.uint8)
    centre = [n // 2 for n in scan.shape]
    box[tuple(slice(c - 10, c + 10) for c in centre)] = 1
    roi = save(scan.with_array(box), out / "box.nii.gz")
    args = ["explain", str(t1), "--model", "brainchop-subcortical18", "--method", "saliency"]
    args += ["--target", "hippocampus", "--roi", str(roi), "--out", str(out / "maps"), "--json", "--quiet"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return scan, box, json.loads(printed.getvalue())


@pytest.mark.slow
def test_real_segmenter_explains_a_class_in_a_mask_on_the_scans_grid(real_explained, shared_brainchop):
    scan, box, out = real_explained
    assert out["target"]["name"] == "Hippocampus" and out["target"]["roi"] == "given mask"
    assert out["target"]["roi_voxels"] == int(box.sum())  # 1 mm conformed: the model grid is the scan's
    (heat,) = load(out["map"])
    assert heat.geometry.same_grid(scan.geometry, atol_mm=1e-4)
    # the prediction came from saliency's own pass (no separate one): both hippocampi, adult size
    assert 5.0 < out["prediction"]["volumes_ml"]["Hippocampus"] < 12.0
    # only the box's score is explained: no attribution beyond the network's receptive field of it
    reach = _receptive_half_width(shared_brainchop / "models" / "model18cls" / "model.json")
    assert reach == 46
    near = np.zeros(scan.shape, bool)
    lo, hi = np.argwhere(box).min(0), np.argwhere(box).max(0) + 1
    near[tuple(slice(max(0, a - reach), b + reach) for a, b in zip(lo, hi, strict=True))] = True
    values = np.asarray(heat.array)
    assert values[~near].max() == 0.0 and values[box > 0].max() > 0
