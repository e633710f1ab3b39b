"""The real models in the zoo (brainchop) on the real T1: shipped files, preprocessing, anatomy.

The plausibility tests run each model once on the real T1 (module-scoped fixtures; about
1.5-2.5 minutes per model on 2 CPU cores) and check the anatomy, not a copy of the answer:
a brain of 1.0-1.9 L, hippocampus and thalamus in both hemispheres with left/right volumes
within 25 % of each other, each well off the brain's midline, and structures in their
anatomical order along the A-P and S-I axes (LPS: +x left, +y posterior, +z superior).
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_mlmi_interp.io import load
from napari_mlmi_interp.models import builtin_models, predict, resolve_model
from napari_mlmi_interp.models.predict import model_foreground
from napari_mlmi_interp.models.registry import zoo_dir
from napari_mlmi_interp.sample import REAL_T1_FILE, load_real_t1
from tests.conftest import ROOT

NAMES = {
    "brainchop-mindgrab": "mindgrab",
    "brainchop-subcortical18": "model18cls",
    "brainchop-aparc50": "model30chan50cls",
}
#: Seconds of each forward, printed at the end of the module (``pytest -s``); never asserted.
TIMES: dict[str, float] = {}


# -- shipped files (no model run) -----------------------------------------------------------------
def _package_data_patterns() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["options.package_data"]["napari_mlmi_interp"].split()


def test_every_shipped_model_file_is_package_data():
    """A non-editable install gets every file of the real models (setuptools globs: ``*`` stops at /)."""
    patterns = _package_data_patterns()
    pkg = ROOT / "napari_mlmi_interp"
    shipped = [p for name in NAMES for p in (zoo_dir() / name).iterdir()]
    shipped += [zoo_dir() / f"{name}{ext}" for name in NAMES for ext in (".json", ".md", ".png")]
    shipped += [zoo_dir() / "brainchop-volumes.json"]
    shipped += [pkg / "data" / REAL_T1_FILE, pkg / "data" / "LICENSE-brainchop.txt"]
    assert len(shipped) == 3 * 4 + 9 + 1 + 2 and all(p.is_file() for p in shipped)
    for path in shipped:
        rel = path.relative_to(pkg).as_posix()
        hit = [p for p in patterns if fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/")]
        assert hit, f"{rel} is in no package_data pattern ({patterns})"


def test_zoo_entries_name_their_files_labels_and_licence():
    specs = {s.name: s for s in builtin_models() if s.name in NAMES}
    assert set(specs) == set(NAMES)
    for spec in specs.values():
        folder = Path(spec.weights).parent
        assert spec.format == "tfjs" and Path(spec.weights).name == "model.json"
        labels = json.loads((folder / "colormap.json").read_text())["labels"]
        assert spec.classes == labels and spec.task == "segmentation"
        assert "MIT License" in (folder / "LICENSE").read_text()
        card = Path(spec.card).read_text()
        assert "| label | volume (mL) |" in card and "Not a medical device" in card
        # the conformed FreeSurfer grid, in nibabel's array order
        assert spec.input.orientation == "LIA" and spec.input.axes == "xyz"
        assert spec.input.size == (256, 256, 256) and spec.input.spacing_mm == (1.0, 1.0, 1.0)
    assert specs["brainchop-aparc50"].normalization.kind == "quantile"
    assert specs["brainchop-aparc50"].input.crop.model == "brainchop-mindgrab"


def test_shipped_models_and_t1_are_brainchops_own(shared_brainchop):
    for name, folder in NAMES.items():
        for file in ("model.json", "model.bin", "colormap.json"):
            ours = (zoo_dir() / name / file).read_bytes()
            assert ours == (shared_brainchop / "models" / folder / file).read_bytes(), f"{name}/{file}"
    assert load_real_t1().array.tobytes() == load(shared_brainchop / "t1_crop.nii.gz")[0].array.tobytes()


def test_the_model_sees_the_array_nibabel_reads(shared_brainchop):
    """Conformed T1 -> spec preprocessing (no crop, no normalisation) == nibabel's (x, y, z) array."""
    from napari_mlmi_interp.models import Preprocessor
    from napari_mlmi_interp.models.spec import InputSpec, Normalization

    path = shared_brainchop / "t1_crop.nii.gz"
    spec = next(s for s in builtin_models() if s.name == "brainchop-subcortical18")
    plain = InputSpec(**{**spec.to_dict()["input"], "crop": None})
    mi = Preprocessor(plain, Normalization(kind="none")).forward(load(path)[0])
    reference = np.asarray(nib.load(str(path)).dataobj)
    assert nib.aff2axcodes(nib.load(str(path)).affine) == ("L", "I", "A")
    np.testing.assert_array_equal(mi.array[0], reference.astype(np.float32))


# -- one forward per model on the real T1 ---------------------------------------------------------
@pytest.fixture(scope="module")
def t1(shared_brainchop):
    return load(shared_brainchop / "t1_crop.nii.gz")[0]


def _timed(name, fn):
    start = time.perf_counter()
    out = fn()
    TIMES[name] = round(time.perf_counter() - start, 1)
    return out


@pytest.fixture(scope="module")
def brain_mask(t1):
    """mindgrab's mask on the T1's grid, the one aparc50's crop then reuses (cached per scan)."""
    return _timed("brainchop-mindgrab", lambda: model_foreground(t1, "brainchop-mindgrab"))


@pytest.fixture(scope="module")
def subcortical(t1):
    model = resolve_model("brainchop-subcortical18")
    return _timed("brainchop-subcortical18", lambda: predict(t1, model))


@pytest.fixture(scope="module")
def aparc(t1, brain_mask):
    model = resolve_model("brainchop-aparc50")
    return _timed("brainchop-aparc50 (crop mask cached)", lambda: predict(t1, model))


@pytest.fixture(scope="module", autouse=True)
def _report_times():
    yield
    if TIMES:
        print("\nforward + inverse per model on the real T1 (s):", json.dumps(TIMES))


def _lps(volume, mask):
    idx = np.argwhere(mask).astype(float)
    return volume.geometry.to_lps(idx)


def _midline_x(volume, labels) -> float:
    return float(_lps(volume, labels > 0)[:, 0].mean())


def _hemispheres(volume, labels, k, mid_x):
    """(left mL, right mL, left centroid LPS, right centroid LPS) of label ``k``: LPS +x is left."""
    pts = _lps(volume, labels == k)
    left, right = pts[pts[:, 0] > mid_x], pts[pts[:, 0] < mid_x]
    ml = volume.geometry.voxel_volume_ml
    return len(left) * ml, len(right) * ml, left.mean(axis=0), right.mean(axis=0)


def _check_bilateral(volume, labels, classes, name, *, min_offset_mm, min_ml):
    mid_x = _midline_x(volume, labels)
    left_ml, right_ml, left_c, right_c = _hemispheres(volume, labels, classes.index(name), mid_x)
    assert min(left_ml, right_ml) >= min_ml, f"{name}: {left_ml:.2f} / {right_ml:.2f} mL"
    assert abs(left_ml - right_ml) <= 0.25 * max(left_ml, right_ml), (
        f"{name}: {left_ml:.2f} vs {right_ml:.2f}"
    )
    # each half is a structure well off the midline, not a rim of voxels straddling it
    assert left_c[0] - mid_x >= min_offset_mm and mid_x - right_c[0] >= min_offset_mm, name
    return (left_c + right_c) / 2


@pytest.mark.slow
def test_mindgrab_finds_a_brain_of_plausible_volume(t1, brain_mask):
    litres = brain_mask.sum() * t1.geometry.voxel_volume_ml / 1000
    assert 1.0 <= litres <= 1.9, f"{litres:.3f} L"
    # one brain, centred in the head: its centroid within 20 mm of the scan's centre
    centre = t1.geometry.to_lps((np.asarray(t1.shape) - 1) / 2)
    assert np.linalg.norm(_lps(t1, brain_mask > 0).mean(axis=0) - centre) < 20


@pytest.mark.slow
def test_subcortical18_segments_both_hemispheres_in_anatomical_order(t1, subcortical):
    labels, classes = subcortical.segmentation.array, subcortical.classes
    assert subcortical.segmentation.geometry.same_grid(t1.geometry)
    hip = _check_bilateral(t1, labels, classes, "Hippocampus", min_offset_mm=15, min_ml=2.0)
    tha = _check_bilateral(t1, labels, classes, "Thalamus", min_offset_mm=5, min_ml=4.0)
    amy = _check_bilateral(t1, labels, classes, "Amygdala", min_offset_mm=15, min_ml=0.8)
    # LPS: the thalamus lies above the hippocampus, the amygdala in front of it
    assert tha[2] > hip[2] + 5 and amy[1] < hip[1] - 5
    cerebellum = _lps(t1, labels == classes.index("Cerebellum-Cortex")).mean(axis=0)
    assert cerebellum[2] < tha[2] - 20 and cerebellum[1] > tha[1] + 20  # below and behind
    # per-label volumes: voxels on the scan's grid x its voxel volume
    for k, c in enumerate(classes[1:], start=1):
        assert subcortical.volumes_ml[c] == pytest.approx((labels == k).sum() * t1.geometry.voxel_volume_ml)


@pytest.mark.slow
def test_aparc50_segments_both_hemispheres_inside_the_brain(t1, aparc, brain_mask):
    labels, classes = aparc.segmentation.array, aparc.classes
    assert aparc.segmentation.geometry.same_grid(t1.geometry)
    # the crop came from mindgrab's brain: nothing labelled outside the brain's bounding box
    box = [(a.min(), a.max() + 1) for a in np.nonzero(brain_mask)]
    outside = labels.copy()
    outside[box[0][0] : box[0][1], box[1][0] : box[1][1], box[2][0] : box[2][1]] = 0
    assert not outside.any()
    hip = _check_bilateral(t1, labels, classes, "Hippocampus", min_offset_mm=15, min_ml=2.0)
    tha = _check_bilateral(t1, labels, classes, "Thalamus-Proper*", min_offset_mm=5, min_ml=4.0)
    _check_bilateral(t1, labels, classes, "Putamen", min_offset_mm=15, min_ml=2.0)
    _check_bilateral(t1, labels, classes, "ctx-insula", min_offset_mm=25, min_ml=2.0)
    assert tha[2] > hip[2] + 5
    total_l = sum(aparc.volumes_ml.values()) / 1000
    assert 0.9 <= total_l <= 1.9, f"{total_l:.3f} L labelled"


@pytest.mark.slow
def test_predicted_volumes_match_the_model_cards(subcortical, aparc, brain_mask, t1):
    """The cards' tables (sample_data/brainchop_cards.py) are what predict() gives now."""
    card = json.loads((zoo_dir() / "brainchop-volumes.json").read_text())
    for pred in (subcortical, aparc):
        shipped = card[pred.model]["volumes_ml"]
        for c, ml in pred.volumes_ml.items():
            assert ml == pytest.approx(shipped[c], rel=0.01, abs=0.05), f"{pred.model} {c}"
    brain_ml = brain_mask.sum() * t1.geometry.voxel_volume_ml
    assert brain_ml == pytest.approx(card["brainchop-mindgrab"]["volumes_ml"]["brain mask"], rel=0.01)


@pytest.mark.slow
def test_cli_predict_json_and_label_map_on_the_scans_grid(
    aparc, shared_brainchop, tmp_path, monkeypatch, capsys
):
    """``predict T1 --model brainchop-aparc50 --json --out DIR`` (the prediction made once, above)."""
    import napari_mlmi_interp.models as models
    from napari_mlmi_interp.cli import main

    monkeypatch.setattr(models, "predict", lambda volume, model, **kw: aparc)
    scan = shared_brainchop / "t1_crop.nii.gz"
    assert main(["predict", str(scan), "--model", "brainchop-aparc50", "--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["voxel_volume_ml"] == pytest.approx(0.001)
    written = nib.load(out["segmentation"])
    np.testing.assert_allclose(written.affine, nib.load(str(scan)).affine, atol=1e-4)
    data = np.asarray(written.dataobj)
    for k, c in enumerate(aparc.classes[1:], start=1):
        assert out["volumes_ml"][c] == pytest.approx((data == k).sum() * 0.001, abs=1e-4), c


def test_preprocessing_crops_to_the_head_on_the_real_t1(t1, shared_brainchop):
    """subcortical18's threshold crop (> 0.2 x max after min-max) on the real T1, without a model."""
    from napari_mlmi_interp.models import Preprocessor

    spec = next(s for s in builtin_models() if s.name == "brainchop-subcortical18")
    pre = Preprocessor(spec.input, spec.normalization)
    mi = pre.forward(t1)
    # recomputed independently from nibabel's (x, y, z) array: min-max, > 0.2, bounding box
    arr = np.asarray(nib.load(str(shared_brainchop / "t1_crop.nii.gz")).dataobj).astype(np.float32)
    norm = (arr - arr.min()) / (arr.max() - arr.min())
    box_xyz = [(int(a.min()), int(a.max()) + 1) for a in np.nonzero(norm > 0.2)]
    assert mi.crop_box == tuple(box_xyz[::-1])  # (z, y, x)
    np.testing.assert_array_equal(mi.array[0], norm[tuple(slice(a, b) for a, b in box_xyz)])
    # a map on the crop lands back on the same voxels of the scan, in LPS mm
    marker = np.zeros(mi.array.shape[1:], np.float32)
    marker[5, 6, 7] = 1.0  # model axes (x, y, z)
    native = pre.inverse(marker, mi, interpolation="nearest")
    (hit,) = np.argwhere(native > 0)
    np.testing.assert_allclose(t1.geometry.to_lps(hit.astype(float)), mi.grid.to_lps(np.array([7.0, 6, 5])))


# -- the crop chain end to end, on small files (no real model) -------------------------------------
def _band(low: float, high: float):
    """A scripted two-class segmenter: class 1 where ``low < x < high`` (logits [0, min(x-low, high-x)])."""
    import torch

    class Band(torch.nn.Module):
        def __init__(self, low: float, high: float) -> None:
            super().__init__()
            self.low, self.high = low, high

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(x), torch.minimum(x - self.low, self.high - x)], dim=1)

    return torch.jit.script(Band(low, high))


def test_predict_crops_to_a_pre_models_mask_and_maps_labels_back(tmp_path):
    """A segmenter cropped to another model's mask (brainchop's preModelId), through spec files."""
    import torch

    from napari_mlmi_interp.io import Geometry, Volume
    from napari_mlmi_interp.models import ModelSpec, load_model

    rng = np.random.default_rng(1)
    array = rng.uniform(0, 40, (20, 22, 24)).astype(np.float32)
    array[5:15, 6:16, 4:20] += 60  # the 'brain' the pre-model finds (55 < x < 150)
    array[0, 0, 0] = 200  # bright, outside the brain: the main model labels it, the crop drops it
    vol = Volume(array, Geometry(array.shape, (1.2, 1.2, 1.2), (3, -4, 5), np.eye(3)))
    torch.jit.save(_band(55.0, 150.0), str(tmp_path / "pre.pt"))
    pre = {"name": "pre", "task": "segmentation", "classes": ["bg", "brain"], "format": "torchscript"}
    pre.update(weights="pre.pt", normalization={"kind": "none"})
    (tmp_path / "pre.json").write_text(json.dumps(pre))
    crop = {"to": "model", "model": str(tmp_path / "pre.json"), "padding_mm": 1.2}
    main_spec = ModelSpec(
        "main",
        "segmentation",
        ["bg", "bright"],
        input={"axes": "xyz", "crop": crop},
        normalization={"kind": "minmax"},
    )
    model = load_model(main_spec, module=_band(0.25, 10.0))
    pred = predict(vol, model)
    mi = pred.model_input
    assert mi.crop_box == ((4, 16), (5, 17), (3, 21))  # the pre-model's box, one voxel wider
    norm = (array - array.min()) / (array.max() - array.min())
    expected = np.zeros(array.shape, np.uint8)
    box = tuple(slice(a, b) for a, b in mi.crop_box)
    expected[box] = norm[box] > 0.25
    assert expected.sum() > 1000 and norm[0, 0, 0] > 0.25
    np.testing.assert_array_equal(pred.segmentation.array, expected)
    assert pred.volumes_ml["bright"] == pytest.approx(expected.sum() * 1.2**3 / 1000)


def test_a_crop_model_named_by_a_relative_path_is_found_beside_the_spec(tmp_path, monkeypatch):
    """``crop: {to: model, model: pre.json}`` in a spec file means the file beside it, from any
    working directory; a plain name stays a name (a registered model)."""
    from napari_mlmi_interp.models import ModelSpec

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "pre.json").write_text("{}")
    spec = {"name": "main", "task": "segmentation", "classes": ["bg", "x"]}
    spec["input"] = {"crop": {"to": "model", "model": "pre.json"}}
    (folder / "main.json").write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    loaded = ModelSpec.from_file(folder / "main.json")
    assert loaded.input.crop.model == str(folder / "pre.json")
    spec["input"]["crop"]["model"] = "brainchop-mindgrab"
    (folder / "named.json").write_text(json.dumps(spec))
    assert ModelSpec.from_file(folder / "named.json").input.crop.model == "brainchop-mindgrab"
