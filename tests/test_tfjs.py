"""The TF.js layers-format loader (issue #15 item 1), against models whose outputs are computed here.

Each hand-built model is written as ``model.json`` + a ``.bin`` shard with numpy; its output
is computed independently in Keras' own convention (channels last, TensorFlow's ``same``
padding rule written out from the TensorFlow documentation, explicit loops over kernel
offsets) and compared with the loaded PyTorch module, whose input is the same array moved by
a plain ``permute``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf

from napari_mlmi_interp.models import ModelError, ModelSpec, load_model
from napari_mlmi_interp.models.tfjs import load_tfjs, read_tfjs_topology, tfjs_sha256

# --- writing a Keras-format model with numpy --------------------------------------------------


def _conv_layer(
    name, inbound, filters, kernel, *, dilation=1, strides=1, padding="same", act="linear", bias=True
):
    k = list(kernel) if isinstance(kernel, tuple) else [kernel] * 3
    return {
        "class_name": "Conv3D",
        "name": name,
        "config": {
            "name": name,
            "filters": filters,
            "kernel_size": k,
            "strides": [strides] * 3 if isinstance(strides, int) else list(strides),
            "dilation_rate": [dilation] * 3,
            "padding": padding,
            "data_format": "channels_last",
            "activation": act,
            "use_bias": bias,
            "dtype": "float32",
        },
        "inbound_nodes": [[[inbound, 0, 0, {}]]],
    }


def _write_model(folder: Path, shape, layers, weights, *, shard_bytes=None, quantize=None) -> Path:
    """``model.json`` + ``model.bin``: Functional topology ``layers``, ``weights`` = [(name, array)]."""
    folder.mkdir(parents=True, exist_ok=True)
    input_layer = {
        "class_name": "InputLayer",
        "name": "input",
        "config": {"batch_input_shape": [None, *shape], "dtype": "float32", "name": "input"},
        "inbound_nodes": [],
    }
    manifest, blob = [], b""
    for name, arr in weights:
        entry = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if quantize is not None:
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255.0
            q = np.round((arr - lo) / scale).astype("<u1")
            entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
            blob += q.tobytes()
        else:
            blob += arr.astype("<f4").tobytes()
        manifest.append(entry)
    all_layers = [input_layer, *layers]
    model = {
        "format": "layers-model",
        "generatedBy": "numpy (test)",
        "modelTopology": {
            "keras_version": "2.6.0",
            "backend": "tensorflow",
            "model_config": {
                "class_name": "Functional",
                "config": {
                    "name": "tiny",
                    "layers": all_layers,
                    "input_layers": [["input", 0, 0]],
                    "output_layers": [[all_layers[-1]["name"], 0, 0]],
                },
            },
        },
        "weightsManifest": [{"paths": ["model.bin"], "weights": manifest}],
    }
    (folder / "model.bin").write_bytes(blob if shard_bytes is None else blob[:shard_bytes])
    path = folder / "model.json"
    path.write_text(json.dumps(model), encoding="utf-8")
    return path


# --- the independent reference: Keras' convolution, channels last ------------------------------


def _tf_same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    # TensorFlow docs ("same" padding): out = ceil(n / s); pad_total = max((out - 1) * s + eff_k - n, 0)
    # with eff_k = (k - 1) * d + 1; pad_before = pad_total // 2.
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _keras_conv3d(x, kernel, bias, *, dilation=(1, 1, 1), strides=(1, 1, 1), padding="same"):
    """Keras Conv3D on one sample ``x[X, Y, Z, C]`` with ``kernel[kx, ky, kz, C, F]``: explicit loops."""
    k = kernel.shape[:3]
    if padding == "same":
        pads = [_tf_same_pads(x.shape[a], k[a], strides[a], dilation[a]) for a in range(3)]
        x = np.pad(x, [*pads, (0, 0)])
    out_shape = [(x.shape[a] - (k[a] - 1) * dilation[a] - 1) // strides[a] + 1 for a in range(3)]
    out = np.zeros((*out_shape, kernel.shape[4]), np.float64)
    for i in range(k[0]):
        for j in range(k[1]):
            for m in range(k[2]):
                sl = tuple(
                    slice(o * dilation[a], o * dilation[a] + (out_shape[a] - 1) * strides[a] + 1, strides[a])
                    for a, o in enumerate((i, j, m))
                )
                out += np.einsum("xyzc,cf->xyzf", x[sl], kernel[i, j, m])
    return out + (0 if bias is None else bias)


def _elu(v):
    return np.where(v > 0, v, np.expm1(np.minimum(v, 0)))


def _run(path: Path, x_keras: np.ndarray) -> np.ndarray:
    """The loaded module on ``x[X, Y, Z, C]``, returned channels last like Keras."""
    net = load_tfjs(path)
    with torch.no_grad():
        y = net(torch.from_numpy(x_keras[None].astype(np.float32)).permute(0, 4, 1, 2, 3))
    return y.permute(0, 2, 3, 4, 1)[0].numpy()


@pytest.fixture
def tiny(tmp_path):
    """Input 9x10x11x1 -> Conv3D 3^3 dilation 2 same (2 filters, elu) -> Conv3D 1^3 (3 classes)."""
    rng = np.random.default_rng(15)
    k1 = rng.normal(size=(3, 3, 3, 1, 2)).astype(np.float32)
    k1[0, 0, 0, 0, 0] = 4.0  # one corner dominates: any flip or axis swap moves the response
    b1 = np.array([0.3, -0.2], np.float32)
    k2 = rng.normal(size=(1, 1, 1, 2, 3)).astype(np.float32)
    b2 = np.array([0.1, 0.0, -0.5], np.float32)
    layers = [
        _conv_layer("conv_a", "input", 2, 3, dilation=2, act="elu"),
        _conv_layer("output", "conv_a", 3, 1),
    ]
    weights = [("conv_a/kernel", k1), ("conv_a/bias", b1), ("output/kernel", k2), ("output/bias", b2)]
    path = _write_model(tmp_path / "tiny", (9, 10, 11, 1), layers, weights)
    return path, layers, weights, (k1, b1, k2, b2)


def test_tiny_dilated_model_matches_keras_computed_independently(tiny):
    path, _, _, (k1, b1, k2, b2) = tiny
    x = np.random.default_rng(1).normal(size=(9, 10, 11, 1))
    expected = _keras_conv3d(_elu(_keras_conv3d(x, k1, b1, dilation=(2, 2, 2))), k2, b2)
    got = _run(path, x)
    assert got.shape == (9, 10, 11, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_a_gn_layer_is_z_scored_per_channel_over_the_volume_as_brainchop_does(tmp_path):
    """brainchop's ``*_gn`` encoding (mindgrab): after the convolution each channel becomes
    ``(v - mean) / sqrt(var + 1e-5)`` over the volume (population variance, no learned affine),
    then the Activation layer; computed here with numpy on the Keras layout."""
    rng = np.random.default_rng(7)
    k1 = rng.normal(size=(3, 3, 3, 1, 2)).astype(np.float32)
    b1 = np.array([5.0, -3.0], np.float32)  # offsets the normalisation must remove
    k2 = rng.normal(size=(1, 1, 1, 2, 2)).astype(np.float32)
    b2 = np.array([0.2, -0.1], np.float32)
    act = {
        "class_name": "Activation",
        "name": "act",
        "config": {"name": "act", "activation": "elu"},
        "inbound_nodes": [[["conv_gn", 0, 0, {}]]],
    }
    layers = [_conv_layer("conv_gn", "input", 2, 3, dilation=2), act, _conv_layer("output", "act", 2, 1)]
    weights = [("conv_gn/kernel", k1), ("conv_gn/bias", b1), ("output/kernel", k2), ("output/bias", b2)]
    path = _write_model(tmp_path / "gn", (8, 9, 10, 1), layers, weights)
    x = rng.normal(size=(8, 9, 10, 1)) * 3 + 1
    v = _keras_conv3d(x, k1, b1, dilation=(2, 2, 2))
    z = (v - v.mean(axis=(0, 1, 2))) / np.sqrt(v.var(axis=(0, 1, 2)) + 1e-5)
    expected = _keras_conv3d(_elu(z), k2, b2)
    np.testing.assert_allclose(_run(path, x), expected, atol=1e-4, rtol=1e-4)
    # the same layers without the name's "_gn": no normalisation, a different answer
    assert not np.allclose(_keras_conv3d(_elu(v), k2, b2), expected, atol=1e-2)


def test_axes_are_not_flipped_or_swapped(tiny):
    """An impulse at one voxel answers where Keras' cross-correlation says, on every axis."""
    path, _, _, (k1, b1, k2, b2) = tiny
    x = np.zeros((9, 10, 11, 1))
    x[4, 6, 3, 0] = 1.0
    got = _run(path, x)
    ref = _keras_conv3d(_elu(_keras_conv3d(x, k1, b1, dilation=(2, 2, 2))), k2, b2)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # the dominant corner k1[0, 0, 0] reads x 2 voxels before the output (dilation 2, padding 2):
    # the strongest response is 2 voxels after the impulse on every axis
    response = np.abs(got - _run(path, np.zeros_like(x))).sum(-1)
    assert np.unravel_index(response.argmax(), response.shape) == (6, 8, 5)


def test_even_kernel_strides_and_gelu_match_tensorflows_same_rule(tmp_path):
    rng = np.random.default_rng(2)
    k1 = rng.normal(size=(2, 3, 4, 2, 3)).astype(np.float32)
    layers = [_conv_layer("c", "input", 3, (2, 3, 4), strides=(2, 1, 3), act="gelu", bias=False)]
    path = _write_model(tmp_path / "m", (9, 8, 10, 2), layers, [("c/kernel", k1)])
    x = rng.normal(size=(9, 8, 10, 2))
    v = _keras_conv3d(x, k1, None, strides=(2, 1, 3))
    expected = 0.5 * v * (1 + erf(v / np.sqrt(2)))  # TF.js 'gelu' is the exact (erf) one
    got = _run(path, x)
    assert got.shape == (5, 8, 4, 3)  # ceil(n / stride)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_valid_padding_and_tanh_gelu(tmp_path):
    rng = np.random.default_rng(3)
    k1 = rng.normal(size=(3, 2, 3, 1, 2)).astype(np.float32)
    b1 = rng.normal(size=2).astype(np.float32)
    layers = [_conv_layer("c", "input", 2, (3, 2, 3), dilation=1, padding="valid", act="gelu_new")]
    path = _write_model(tmp_path / "m", (7, 6, 5, 1), layers, [("c/kernel", k1), ("c/bias", b1)])
    x = rng.normal(size=(7, 6, 5, 1))
    v = _keras_conv3d(x, k1, b1, padding="valid")
    expected = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    got = _run(path, x)
    assert got.shape == (5, 5, 3, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_uint8_quantized_weights_dequantize_as_tfjs_does(tmp_path, tiny):
    _, layers, weights, _ = tiny
    path = _write_model(tmp_path / "q", (9, 10, 11, 1), layers, weights, quantize="uint8")
    net = load_tfjs(path)
    k1 = weights[0][1]
    lo, scale = float(k1.min()), (float(k1.max()) - float(k1.min())) / 255.0
    dequantized = np.round((k1 - lo) / scale) * scale + lo
    np.testing.assert_allclose(
        net.conv_a.weight.detach().numpy(), dequantized.transpose(4, 3, 0, 1, 2), atol=1e-6
    )
    assert np.abs(net.conv_a.weight.detach().numpy() - k1.transpose(4, 3, 0, 1, 2)).max() <= scale / 2 + 1e-6


# --- refusals -----------------------------------------------------------------------------------


def test_unsupported_layer_is_refused_by_name_and_class(tmp_path, tiny):
    _, layers, weights, _ = tiny
    bn = {"class_name": "BatchNormalization", "name": "bn1", "config": {"name": "bn1"}}
    bn["inbound_nodes"] = [[["conv_a", 0, 0, {}]]]
    out = dict(layers[1], inbound_nodes=[[["bn1", 0, 0, {}]]])
    path = _write_model(tmp_path / "bn", (9, 10, 11, 1), [layers[0], bn, out], weights)
    with pytest.raises(ModelError) as info:
        load_tfjs(path)
    assert str(info.value) == (
        f"{path}: layer 'bn1' is BatchNormalization, which the TF.js loader does not support "
        "(supported: InputLayer, Conv3D, Activation, ReLU, ELU, Softmax, Dropout, SpatialDropout3D)"
    )


def test_short_shard_is_refused_with_sizes(tmp_path, tiny):
    _, layers, weights, _ = tiny
    path = _write_model(tmp_path / "short", (9, 10, 11, 1), layers, weights, shard_bytes=100)
    with pytest.raises(ModelError) as info:
        load_tfjs(path)
    assert str(info.value) == (
        f"{path}: weight group 0 (model.bin) holds 100 bytes but its manifest describes 260"
    )  # 3*3*3*1*2 + 2 + 1*1*1*2*3 + 3 = 65 float32 values


def test_branching_graph_and_bad_shapes_are_refused(tmp_path, tiny):
    _, layers, weights, _ = tiny
    side = dict(layers[1], name="side", config=dict(layers[1]["config"], name="side"))
    path = _write_model(tmp_path / "branch", (9, 10, 11, 1), [*layers, side], weights)
    with pytest.raises(ModelError, match=r"'conv_a' feeds 2 layers .*chain of layers only"):
        load_tfjs(path)
    bad = [(n, a[..., :1] if n == "output/kernel" else a) for n, a in weights]
    path = _write_model(tmp_path / "shape", (9, 10, 11, 1), layers, bad)
    with pytest.raises(
        ModelError, match=r"kernel output/kernel has shape \[1, 1, 1, 2, 1\] but .* \[1, 1, 1, 2, 3\]"
    ):
        load_tfjs(path)
    extra = [*weights, ("ghost/kernel", np.zeros((1, 1, 1, 1, 1), np.float32))]
    path = _write_model(tmp_path / "extra", (9, 10, 11, 1), layers, extra)
    with pytest.raises(ModelError, match="1 manifest weights belong to no layer"):
        load_tfjs(path)


# --- through the spec -----------------------------------------------------------------------------


def test_spec_format_tfjs_loads_through_load_model(tmp_path, tiny):
    path, *_ = tiny
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(
        "name: tiny\ntask: segmentation\nclasses: [bg, a, b]\nformat: tfjs\nweights: tiny/model.json\n",
        encoding="utf-8",
    )
    loaded = load_model(ModelSpec.from_file(spec_file))
    digest = hashlib.sha256(path.read_bytes() + (path.parent / "model.bin").read_bytes()).hexdigest()
    assert loaded.sha256 == digest == tfjs_sha256(path)
    assert loaded.path == str(path)
    x = torch.zeros(1, 1, 9, 10, 11)
    assert tuple(loaded(x).shape) == (1, 3, 9, 10, 11)
    auto = ModelSpec(name="t", task="segmentation", classes=["bg", "a", "b"], weights=str(path))
    assert load_model(auto).sha256 == digest  # format auto recognises model.json
    wrong = ModelSpec(name="t", task="segmentation", classes=["bg", "a"], format="tfjs", weights=str(path))
    with pytest.raises(ModelError, match="3 output channels but the spec 't' names 2 classes"):
        load_model(wrong)


# --- the real brainchop models --------------------------------------------------------------------

_REAL = ["mindgrab", "model18cls", "model30chan18cls", "model30chan50cls", "model21_104class"]


@pytest.fixture(scope="module")
def t1_center(shared_brainchop):
    """The central 64^3 of the real T1 (nibabel array order), min-max scaled to [0, 1]."""
    import nibabel as nib

    a = np.asarray(nib.load(shared_brainchop / "t1_crop.nii.gz").dataobj, dtype=np.float32)
    a = (a - a.min()) / (a.max() - a.min())
    return np.ascontiguousarray(a[96:160, 96:160, 96:160])


@pytest.mark.parametrize("name", _REAL)
def test_real_brainchop_model_loads_and_runs(shared_brainchop, t1_center, name):
    folder = shared_brainchop / "models" / name
    topo = read_tfjs_topology(folder / "model.json")
    net = load_tfjs(folder / "model.json")
    assert sum(p.numel() for p in net.parameters()) == topo.n_parameters
    manifest = json.loads((folder / "model.json").read_text())["weightsManifest"]
    assert topo.n_parameters == sum(int(np.prod(w["shape"])) for g in manifest for w in g["weights"])
    labels = json.loads((folder / "colormap.json").read_text())["labels"]
    with torch.no_grad():
        y = net(torch.from_numpy(t1_center)[None, None])
    assert tuple(y.shape) == (1, len(labels), 64, 64, 64)
    assert torch.isfinite(y).all()
