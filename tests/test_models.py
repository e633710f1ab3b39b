"""Bring-your-own models: TorchScript, MONAI state_dict + spec, entry points, safe loading."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_mlmi_interp.models import (
    ModelError,
    ModelSpec,
    available_models,
    load_model,
    load_state_dict,
    predict,
    resolve_model,
)
from napari_mlmi_interp.sample import make_sample


class TinyNet(torch.nn.Module):
    """Mean intensity inside a fixed box -> 2 logits (deterministic, no training)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def sample_scan():
    return make_sample().scan


def _spec(**kw):
    base = {
        "name": "test-model",
        "task": "classification",
        "classes": ["no lesion", "lesion"],
        "input": {"spacing_mm": [4.0, 4.0, 4.0], "size": [32, 32, 32]},
        "normalization": {"kind": "zscore", "nonzero": True},
    }
    base.update(kw)
    return base


def test_torchscript_model_saved_by_the_test_loads_and_predicts(tmp_path, sample_scan):
    torch.manual_seed(0)
    net = TinyNet().eval()
    path = tmp_path / "tiny.pt"
    torch.jit.script(net).save(str(path))
    (tmp_path / "tiny.yaml").write_text(json.dumps(_spec(weights="tiny.pt", format="torchscript")))
    model = resolve_model(tmp_path / "tiny.yaml")
    assert len(model.sha256) == 64
    pred = predict(sample_scan, model)
    assert pred.probabilities.shape == (2,) and abs(pred.probabilities.sum() - 1) < 1e-6
    # same answer as running the module by hand on the same preprocessed input
    with torch.no_grad():
        expected = torch.softmax(net(pred.model_input.tensor()), dim=1)[0].numpy()
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-5)
    # "auto" recognises TorchScript; a sidecar spec next to the weights is found too
    (tmp_path / "tiny.json").write_text(json.dumps(_spec(weights="tiny.pt")))
    assert resolve_model(path).spec.name == "test-model"


def test_monai_densenet121_state_dict_with_spec(tmp_path, sample_scan):
    from monai.networks.nets import DenseNet121

    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2}
    torch.manual_seed(0)
    net = DenseNet121(**kwargs).eval()
    torch.save(net.state_dict(), tmp_path / "densenet.pt")
    spec = _spec(
        name="densenet",
        weights="densenet.pt",
        format="state_dict",
        architecture="monai:DenseNet121",
        architecture_kwargs=kwargs,
        cam_layers=["features.denseblock4"],
    )
    (tmp_path / "densenet.yaml").write_text(json.dumps(spec))
    model = resolve_model(tmp_path / "densenet.yaml")
    pred = predict(sample_scan, model)
    with torch.no_grad():
        expected = torch.softmax(net(pred.model_input.tensor()), dim=1)[0].numpy()
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-5)
    assert pred.label in ("no lesion", "lesion")


def test_segmentation_model_gives_a_native_grid_mask_in_ml(tmp_path, sample_scan):
    class Thresh(torch.nn.Module):
        def forward(self, x):  # foreground where normalised intensity > 2 sd
            return torch.cat([torch.zeros_like(x), x - 2.0], dim=1)

    spec = ModelSpec.from_dict(
        _spec(
            name="thresh",
            task="segmentation",
            classes=["background", "bright"],
            input={"patch_size": [32, 32, 32]},
        )
    )
    model = load_model(spec, module=Thresh())
    pred = predict(sample_scan, model)
    seg = pred.segmentation
    assert seg.shape == sample_scan.shape and seg.geometry is sample_scan.geometry
    assert pred.volumes_ml["bright"] == pytest.approx(seg.array.sum() * sample_scan.geometry.voxel_volume_ml)
    assert pred.volumes_ml["bright"] > 0


def test_pickle_payload_disguised_as_a_model_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "weights.pt"
    with open(path, "wb") as fh:
        pickle.dump({"conv.weight": Payload()}, fh)
    spec = ModelSpec.from_dict(
        _spec(weights=str(path), format="state_dict", architecture="tests.test_models:TinyNet")
    )
    with pytest.raises(
        ModelError, match=r"weights\.pt: refused: the file asks to unpickle arbitrary Python objects"
    ):
        load_model(spec)
    assert not marker.exists(), "the pickled code ran"
    # the same payload inside torch.save's zip format
    torch.save({"conv.weight": Payload()}, path)
    assert not marker.exists()
    with pytest.raises(ModelError, match="refused"):
        load_state_dict(path)
    assert not marker.exists(), "the pickled code ran"


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    torch.save({"conv.weight": torch.zeros(8, 1, 3, 3, 3)}, tmp_path / "w.pt")
    spec = ModelSpec.from_dict(
        _spec(weights=str(tmp_path / "w.pt"), architecture="tests.test_models:TinyNet")
    )
    with pytest.raises(
        ModelError, match=r"do not fit tests\.test_models:TinyNet: .*missing.*conv\.weight has shape"
    ):
        load_model(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "detection"}, "task must be 'classification' or 'segmentation'"),
        ({"classes": []}, "classes must be a non-empty list"),
        ({"input": {"size": [32, 32]}}, r"input size must be three positive numbers"),
        ({"input": {"orientation": "RAA"}}, "orientation must be three letters"),
        ({"normalization": {"kind": "robust"}}, "normalization kind must be one of"),
        ({"wieghts": "x.pt"}, "unknown spec field: wieghts"),
    ],
)
def test_bad_specs_say_what_is_wrong(tmp_path, change, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec(**change)))
    with pytest.raises(ModelError, match=message):
        ModelSpec.from_file(path)


def test_unknown_model_name_lists_what_exists():
    with pytest.raises(ModelError, match="no model named 'nope'"):
        resolve_model("nope")


# -- entry points: a small test package registered through importlib.metadata -----------------------
@pytest.fixture
def entry_point_package(tmp_path, monkeypatch):
    """A package 'mlmi_test_models' with a dist-info declaring one model entry point."""
    root = tmp_path / "site"
    pkg = root / "mlmi_test_models"
    pkg.mkdir(parents=True)
    torch.manual_seed(1)
    net = TinyNet().eval()
    torch.jit.script(net).save(str(pkg / "tiny.pt"))
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from napari_mlmi_interp.models import ModelSpec

            def tiny_spec():
                return ModelSpec(
                    name="entry-point-tiny",
                    task="classification",
                    classes=["no lesion", "lesion"],
                    format="torchscript",
                    weights=str(Path(__file__).parent / "tiny.pt"),
                    input={"spacing_mm": [4.0, 4.0, 4.0], "size": [32, 32, 32]},
                    description="registered by a test package",
                )
            """
        )
    )
    dist = root / "mlmi_test_models-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlmi-test-models\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[napari_mlmi_interp.models]\nentry-point-tiny = mlmi_test_models:tiny_spec\n"
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def test_entry_point_model_loads_predicts_and_is_listed(entry_point_package, sample_scan):
    names = [s.name for s in available_models()]
    assert "entry-point-tiny" in names
    model = resolve_model("entry-point-tiny")
    assert model.spec.source.startswith("entry point entry-point-tiny")
    pred = predict(sample_scan, model)
    assert np.isfinite(pred.probabilities).all()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(entry_point_package), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "napari_mlmi_interp.cli", "models", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    entry = listed["entry-point-tiny"]
    assert entry["task"] == "classification" and entry["classes"] == ["no lesion", "lesion"]
    assert entry["prototype"] is False


def test_predict_cli_json(tmp_path):
    torch.manual_seed(0)
    torch.jit.script(TinyNet().eval()).save(str(tmp_path / "tiny.pt"))
    (tmp_path / "spec.json").write_text(json.dumps(_spec()))
    from napari_mlmi_interp.sample import write_sample

    scan = write_sample(tmp_path)["scan"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_mlmi_interp.cli",
            "predict",
            scan,
            "--model",
            str(tmp_path / "tiny.pt"),
            "--spec",
            str(tmp_path / "spec.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["probabilities"]) == {"no lesion", "lesion"} and len(out["model_sha256"]) == 64
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_mlmi_interp.cli",
            "predict",
            scan,
            "--model",
            str(tmp_path / "nope.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no model named" in bad.stderr


class FixedHeadNet(torch.nn.Module):
    """A fixed-size head (flatten + linear): it accepts ``channels`` x 8^3 voxels only."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(channels, 2, 3, padding=1)
        self.head = torch.nn.Linear(2 * 8 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.conv(x), 1))


@pytest.mark.parametrize(
    "channels, size, message",
    [
        (1, 8, None),  # fits
        (2, 8, r"failed on an input of shape \(1, 1, 8, 8, 8\).*channels"),  # expects 2 channels
        (1, 16, r"failed on an input of shape \(1, 1, 16, 16, 16\).*shapes cannot be multiplied"),
    ],
)
def test_torchscript_with_the_wrong_input_shape_or_channels_says_so(
    tmp_path, sample_scan, channels, size, message
):
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import ModelError

    torch.jit.script(FixedHeadNet(channels).eval()).save(str(tmp_path / "net.pt"))
    spec = _spec(
        name="fixed-head",
        weights="net.pt",
        format="torchscript",
        input={"spacing_mm": [4.0] * 3, "size": [size] * 3},
    )
    (tmp_path / "net.json").write_text(json.dumps(spec))
    model = resolve_model(tmp_path / "net.json")
    if message is None:
        assert predict(sample_scan, model).probabilities.shape == (2,)
        assert explain(sample_scan, model, "saliency", target=1).model_map.shape == (8, 8, 8)
        return
    # both ways in: a prediction, and an attribution whose own forward pass meets the model first
    for run in (
        lambda: predict(sample_scan, model),
        lambda: explain(sample_scan, model, "saliency", target=1),
    ):
        with pytest.raises(ModelError, match=message) as info:
            run()
        text = str(info.value)
        assert text.startswith("model 'fixed-head'") and "\n" not in text and len(text) < 500
