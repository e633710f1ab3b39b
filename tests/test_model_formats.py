"""Model formats users already have: MONAI bundles (built from the real Model Zoo configs in
shared/data), torch.export programs and ONNX, through ``models``, ``predict`` and ``explain``,
maps on the native grid, compared with the eager model they came from."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mlmi_interp.explain import explain
from napari_mlmi_interp.models import ModelError, predict, resolve_model
from napari_mlmi_interp.sample import make_sample

from .conftest import in_ci

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def sample():
    return make_sample()


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def _on_native_grid(result, volume) -> None:
    assert result.native.shape == volume.shape
    np.testing.assert_allclose(result.native.geometry.index_to_lps, volume.geometry.index_to_lps, atol=1e-9)
    assert np.isfinite(result.native.array).all() and np.abs(result.native.array).max() > 0


# -- MONAI bundles ----------------------------------------------------------------------------------------


def _bundle(shared_bundles: Path, name: str, tmp: Path, edit=None) -> Path:
    """A bundle folder: the real configs (``edit`` may change them), random weights saved as the zoo does."""
    from napari_mlmi_interp.models.loaders.bundle import build_network

    root = tmp / name
    shutil.copytree(shared_bundles / name, root)
    if edit is not None:
        edit(root)
    torch.manual_seed(0)
    net = build_network(root)
    (root / "models").mkdir(exist_ok=True)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def _classification_3d(root: Path) -> None:
    """The zoo's 2D classification template made 3D (its README's recipe), 32³ input."""
    import yaml

    config = root / "configs" / "inference.yaml"
    data = yaml.safe_load(config.read_text())
    data["network_def"]["spatial_dims"] = 3
    config.write_text(yaml.safe_dump(data))
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [32, 32, 32]
    meta_path.write_text(json.dumps(meta))


def test_zoo_bundles_become_specs_with_their_preprocessing(shared_bundles, tmp_path, capsys):
    from napari_mlmi_interp.cli import main

    spleen = _bundle(shared_bundles, "spleen_ct_segmentation", tmp_path)
    prostate = _bundle(shared_bundles, "prostate_mri_anatomy", tmp_path)
    brats = _bundle(shared_bundles, "brats_mri_segmentation", tmp_path)
    template = _bundle(shared_bundles, "segmentation_template", tmp_path)
    assert main(["models", str(spleen), str(prostate), str(brats), str(template), "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["Spleen CT segmentation"]["classes"] == ["background", "spleen"]
    assert listed["Prostate MRI anatomy"]["classes"] == ["background", "central gland", "peripheral zone"]
    assert listed["BraTS MRI segmentation"]["classes"] == ["Tumor core", "Whole tumor", "Enhancing tumor"]
    assert all(m["task"] == "segmentation" and m["format"] == "monai_bundle" for m in listed.values())
    s = resolve_model(spleen).spec
    # Orientationd RAS, Spacingd pixdim (x, y, z) = (1.5, 1.5, 2) -> (z, y, x); roi_size -> patch
    assert (s.input.orientation, s.input.axes, s.input.spacing_mm) == ("RAS", "xyz", (2.0, 1.5, 1.5))
    assert s.input.patch_size == (96, 96, 96) and s.input.channels == 1
    # ScaleIntensityRanged a_min -57, a_max 164 -> [0, 1] clipped: a window
    assert (s.normalization.kind, s.normalization.center, s.normalization.width) == ("window", 53.5, 221.0)
    assert s.domain.modality == ["CT"]
    p = resolve_model(prostate).spec
    # ScaleIntensityd then NormalizeIntensityd: the z-score over every voxel is the whole story
    assert (p.normalization.kind, p.normalization.nonzero, p.input.spacing_mm) == (
        "zscore",
        False,
        (0.5,) * 3,
    )
    b = resolve_model(brats).spec
    assert b.input.channels == 4 and b.input.patch_size == (160, 240, 240)
    assert (b.normalization.kind, b.normalization.nonzero) == ("zscore", True)
    # a file of the bundle (what "From file…" gives) opens the bundle
    assert resolve_model(spleen / "configs" / "metadata.json").spec.name == "Spleen CT segmentation"


def test_a_segmentation_bundle_predicts_and_explains_on_the_native_grid(shared_bundles, tmp_path, sample):
    def small(root: Path) -> None:  # the zoo's template network, on a 32³ patch (a CPU test)
        config = root / "configs" / "inference.yaml"
        config.write_text(
            config.read_text() + "\ninferer:\n  _target_: SlidingWindowInferer\n  roi_size: [32, 32, 32]\n"
        )

    model = resolve_model(_bundle(shared_bundles, "segmentation_template", tmp_path, edit=small))
    assert model.spec.input.patch_size == (32, 32, 32)
    volumes = predict(sample.scan, model).to_dict()["volumes_ml"]
    assert set(volumes) == {"category 1", "category 2", "category 3"}  # every foreground class, in mL
    scan_ml = sample.scan.array.size * sample.scan.geometry.voxel_volume_ml
    assert all(v >= 0 for v in volumes.values()) and sum(volumes.values()) <= scan_ml + 1e-6
    for method in ("saliency", "gradcam"):
        result = explain(sample.scan, model, method, target="category 1", roi=sample.mask)
        _on_native_grid(result, sample.scan)


def test_a_3d_classification_bundle_predicts_and_explains(shared_bundles, tmp_path, sample):
    model = resolve_model(
        _bundle(shared_bundles, "classification_template", tmp_path, edit=_classification_3d)
    )
    assert model.spec.task == "classification"
    assert model.spec.classes == ["background", "circle", "triangle", "rectangle"]
    assert model.spec.input.size == (32, 32, 32) and model.spec.normalization.kind == "minmax"
    probabilities = predict(sample.scan, model).to_dict()["probabilities"]
    assert abs(sum(probabilities.values()) - 1) < 1e-5
    for method in ("saliency", "gradcam"):
        _on_native_grid(explain(sample.scan, model, method, target="circle"), sample.scan)


def test_the_2d_template_and_unmapped_transforms_are_one_line_each(shared_bundles, tmp_path):
    from napari_mlmi_interp.models.loaders.bundle import bundle_spec

    with pytest.raises(ModelError, match="2D input; only 3D models"):
        bundle_spec(_bundle(shared_bundles, "classification_template", tmp_path / "a"))

    def resize(root: Path) -> None:
        config = root / "configs" / "inference.json"
        data = json.loads(config.read_text())
        data["preprocessing"]["transforms"].insert(
            3, {"_target_": "Resized", "keys": "@image_key", "spatial_size": [64, 64, 64]}
        )
        config.write_text(json.dumps(data))

    with pytest.raises(ModelError) as info:
        bundle_spec(_bundle(shared_bundles, "spleen_ct_segmentation", tmp_path / "b", edit=resize))
    text = str(info.value)
    assert "Resized (transform 4 of 7)" in text and "write a spec" in text and "\n" not in text


def test_a_bundle_never_runs_its_python(shared_bundles, tmp_path):
    from napari_mlmi_interp.models.loaders.bundle import build_network

    canary = tmp_path / "ran"

    def expression(root: Path) -> None:
        config = root / "configs" / "inference.json"
        data = json.loads(config.read_text())
        data["network_def"]["out_channels"] = f"$open({str(canary)!r}, 'w').write('x') and 2"
        config.write_text(json.dumps(data))

    root = tmp_path / "spleen"
    shutil.copytree(shared_bundles / "spleen_ct_segmentation", root)
    expression(root)
    with pytest.raises(ModelError, match="with Python, which a model file must not run"):
        build_network(root)
    assert not canary.exists()
    # weights that need unpickling are refused as for any state_dict
    good = _bundle(shared_bundles, "spleen_ct_segmentation", tmp_path / "w")
    torch.save({"model": {"weight": torch.zeros(1)}, "hook": Path("x")}, good / "models" / "model.pt")
    with pytest.raises(ModelError, match="refused: the file asks to unpickle"):
        resolve_model(good)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"_target_": "subprocess.run", "args": ["true"]}, "not a network of monai.networks.nets"),
        ({"_requires_": ["x"]}, "_requires_ is not followed"),
        ({"_mode_": "debug"}, "_mode_ is not followed"),
        ({"act": {"_target_": "torch.nn.ReLU"}}, "builds another object"),
        ({"out_channels": "%configs/metadata.json::version"}, "a macro"),
    ],
)
def test_a_bundle_network_def_calls_nothing_but_a_monai_network(shared_bundles, tmp_path, change, message):
    from napari_mlmi_interp.models.loaders.bundle import build_network

    root = tmp_path / "spleen"
    shutil.copytree(shared_bundles / "spleen_ct_segmentation", root)
    config = root / "configs" / "inference.json"
    data = json.loads(config.read_text())
    data["network_def"].update(change)
    config.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        build_network(root)


# -- torch.export ------------------------------------------------------------------------------------------


def _spec_of(model, **changes) -> dict:
    spec = model.spec.to_dict()
    for key in ("weights", "card", "prototype_metadata", "source"):
        spec.pop(key, None)
    return {**spec, **changes}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo classifier (dynamic batch, spec inside) and segmenter (batch 1, sidecar spec) as .pt2."""
    folder = tmp_path_factory.mktemp("pt2")
    clf, seg = resolve_model("lesion-classifier"), resolve_model("lesion-segmenter")
    x = torch.zeros(2, 1, *clf.spec.input.size)
    program = torch.export.export(clf.module, (x,), dynamic_shapes={"x": {0: torch.export.Dim.AUTO}})
    extra = {"napari_mlmi_interp/spec.json": json.dumps(_spec_of(clf, name="clf-pt2", format="torch_export"))}
    torch.export.save(program, folder / "clf.pt2", extra_files=extra)
    program = torch.export.export(seg.module, (torch.zeros(1, 1, *seg.spec.input.size),))  # static batch 1
    torch.export.save(program, folder / "seg.pt2")
    (folder / "seg.json").write_text(json.dumps(_spec_of(seg, name="seg-pt2", format="auto")))
    return {"clf": (clf, folder / "clf.pt2"), "seg": (seg, folder / "seg.pt2")}


@pytest.mark.parametrize("kind", ["clf", "seg"])
def test_an_exported_program_predicts_and_explains_as_its_eager_model(exported, sample, kind):
    eager, path = exported[kind]
    model = resolve_model(path)
    assert model.spec.format in ("torch_export", "auto") and model.path == str(path)
    a, b = predict(sample.scan, eager).to_dict(), predict(sample.scan, model).to_dict()
    key = "probabilities" if kind == "clf" else "volumes_ml"
    assert a[key].keys() == b[key].keys()
    assert all(abs(a[key][k] - b[key][k]) <= 1e-4 * max(1.0, abs(a[key][k])) for k in a[key])
    target, roi = ("lesion", None) if kind == "clf" else ("lesion", sample.mask)
    for method in ("saliency", "gradcam", "integrated_gradients"):
        params = {"n_steps": 4} if method == "integrated_gradients" else None
        mine = explain(sample.scan, model, method, target=target, roi=roi, params=params)
        ref = explain(sample.scan, eager, method, target=target, roi=roi, params=params)
        _on_native_grid(mine, sample.scan)
        assert _max_rel(mine.native.array, ref.native.array) < 1e-4, method


def test_methods_that_override_relu_modules_are_refused_on_a_program(exported, sample, capsys):
    from napari_mlmi_interp.cli import main
    from napari_mlmi_interp.errors import InputError

    _, path = exported["clf"]
    model = resolve_model(path)
    with pytest.raises(InputError, match=r"nn.ReLU.*runs as functions"):
        explain(sample.scan, model, "guided_backprop", target="lesion")
    assert main(["methods", "--model", str(path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    refused = {n for n, r in rows.items() if not r["available"]}
    assert refused == {"deeplift", "guided_backprop", "deconvolution", "guided_gradcam"}


def _rewritten(path: Path, out: Path, change) -> Path:
    """A copy of the archive ``path`` with ``change(name, data) -> data`` applied to each entry."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info.filename)))
    return out


def test_a_program_that_needs_unpickling_or_eval_is_refused(exported, tmp_path):
    from napari_mlmi_interp.models.loaders.exported import _safe_expression

    _, path = exported["clf"]
    bad = tmp_path / "bad.pt2"
    shutil.copy(path, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("clf/data/constants/opaque_obj_0", b"\x80\x04N.")
    with pytest.raises(ModelError, match=r"refused: .*unpickling"):
        resolve_model(bad)

    def hidden(name: str, data: bytes) -> bytes:  # a pickled constant named by the config only
        if name.endswith("model_constants_config.json"):
            return json.dumps(
                {"config": {"c": {"path_name": "opaque_obj_x/evil", "use_pickle": True}}}
            ).encode()
        return data

    with pytest.raises(ModelError, match=r"refused: .*unpickling"):
        resolve_model(_rewritten(path, tmp_path / "hidden.pt2", hidden))

    def shape(name: str, data: bytes) -> bytes:  # a symbolic shape that sympify would evaluate
        return (
            data.replace(b"Symbol('s", b"__import__('os').getcwd() + Symbol('s", 1)
            if "/models/" in name
            else data
        )

    with pytest.raises(ModelError, match="not a plain expression"):
        resolve_model(_rewritten(path, tmp_path / "shape.pt2", shape))
    assert _safe_expression("Mul(Integer(2), Symbol('s77', positive=True, integer=True))")
    assert not _safe_expression("eval('1')") and not _safe_expression("Symbol('s0').__class__")


def test_an_embedded_spec_cannot_name_an_architecture(exported, tmp_path):
    _, path = exported["clf"]

    def spec(name: str, data: bytes) -> bytes:
        if name.endswith("napari_mlmi_interp/spec.json"):
            given = json.loads(data)
            given.update(
                format="state_dict", architecture="subprocess:run", architecture_kwargs={"args": ["x"]}
            )
            return json.dumps(given).encode()
        return data

    model = resolve_model(_rewritten(path, tmp_path / "spec.pt2", spec))
    assert model.spec.format == "torch_export" and model.spec.architecture is None


# -- ONNX --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from napari_mlmi_interp.models.loaders.onnx import onnx2torch_module

    try:
        onnx2torch_module()
    except ModelError as exc:  # scripts/test.sh installs the extra: CI must run these
        if in_ci():
            pytest.fail(f"{exc}; CI must run the ONNX tests", pytrace=False)
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ("lesion-classifier", "lesion-segmenter"):
        eager = resolve_model(name)
        x = torch.zeros(1, 1, *eager.spec.input.size)
        path = folder / f"{name}.onnx"
        torch.onnx.export(
            eager.module, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17,
        )  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(_spec_of(eager, name=f"{name}-onnx", format="onnx")))
        out[name] = (eager, path)
    return out


@pytest.mark.parametrize("name", ["lesion-classifier", "lesion-segmenter"])
def test_an_onnx_model_equals_onnxruntime_and_explains_as_its_source(onnx_models, sample, name):
    import onnxruntime as ort

    eager, path = onnx_models[name]
    model = resolve_model(path)
    x = torch.randn(3, 1, *eager.spec.input.size, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(model.module(x).numpy(), reference, atol=1e-4)
    assert model.spec.cam_layers and model.spec.cam_layers[0] in dict(model.module.named_modules())
    target, roi = ("lesion", None) if name == "lesion-classifier" else ("lesion", sample.mask)
    for method in ("saliency", "gradcam", "deeplift"):
        mine = explain(sample.scan, model, method, target=target, roi=roi)
        ref = explain(sample.scan, eager, method, target=target, roi=roi)
        _on_native_grid(mine, sample.scan)
        assert _max_rel(mine.native.array, ref.native.array) < 1e-4, method


def test_an_onnx_operator_onnx2torch_lacks_is_named(onnx_models, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("HannWindow", ["n"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )  # fmt: skip
    path = tmp_path / "window.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    path.with_suffix(".json").write_text(
        json.dumps({"name": "w", "task": "classification", "classes": ["a"]})
    )
    with pytest.raises(ModelError, match="cannot convert the ONNX operator\\(s\\) HannWindow"):
        resolve_model(path)
