"""TensorFlow.js *layers* models (brainchop's MeshNets) as PyTorch modules, without TensorFlow.

A TF.js layers model is a folder: ``model.json`` (the Keras topology under ``modelTopology``
and a ``weightsManifest``) and binary shards of little-endian weights. In a spec::

    format: tfjs
    weights: models/model18cls/model.json     # relative to the spec file

Public API
----------
:func:`load_tfjs` (``model.json`` -> eval-mode float32 ``torch.nn.Module``),
:func:`read_tfjs_topology` (the layer list and weight manifest, for model cards, without
reading the shards), :func:`tfjs_sha256` (digest of ``model.json`` and its shards, in manifest
order: the ``LoadedModel.sha256`` of a tfjs spec).

Axis convention
---------------
Keras takes ``[N, X, Y, Z, C]`` (channels last; ``X, Y, Z`` are whatever array order the model
was trained on: for brainchop, the conformed NIfTI as nibabel reads it). The module takes
``(N, C, X, Y, Z)``: the same array moved by a plain ``x.permute(0, 4, 1, 2, 3)``, no flip and
no transpose of the spatial axes, and returns ``(N, classes, X, Y, Z)`` (Keras' output
``[N, X, Y, Z, classes]`` permuted the same way). Kernels ``[kx, ky, kz, in, out]`` become
``[out, in, kx, ky, kz]``; both frameworks cross-correlate, so kernel axis *i* still slides
along input axis *i*.

What is supported
-----------------
Functional or Sequential models that are a chain (each layer feeds the next) of
``InputLayer``, ``Conv3D`` (``filters``, ``kernel_size``, ``strides``, ``dilation_rate``,
``groups``, ``use_bias``, its own ``activation``, ``padding`` ``valid`` or ``same`` with
TensorFlow's rule: total padding ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)``, the
smaller half before, so even kernels and strides > 1 match Keras exactly), ``Activation``,
``ReLU``, ``ELU``, ``Softmax`` and ``Dropout`` / ``SpatialDropout3D`` (identity at inference).
A Conv3D whose name ends in ``_gn`` (brainchop's exporter encoding, e.g. mindgrab) is followed by
a parameter-free instance normalisation over the spatial axes, as brainchop runs it.
Activations: ``linear``, ``relu``, ``relu6``, ``elu``, ``selu``, ``sigmoid``, ``tanh``,
``softplus``, ``swish``/``silu``, ``softmax`` (over channels), ``gelu`` and ``gelu_new``.
TF.js' ``gelu`` is the exact one, ``x * (1 + erf(x / sqrt(2))) / 2`` (tfjs-layers
``activations.ts``: class ``Gelu``; Keras' ``gelu`` defaults to ``approximate=False`` too);
``gelu_new`` is the tanh approximation. Weights are float32, or quantized as the TF.js
converter writes them (``uint8``/``uint16`` affine with ``scale`` and ``min``, ``float16``).
Anything else, a branching graph, a weight whose shape or count does not fit, or shards
whose size differs from the manifest's, is refused with a :class:`ModelError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ModelError

__all__ = [
    "SUPPORTED_LAYERS",
    "TfjsLayer",
    "TfjsTopology",
    "TfjsWeight",
    "load_tfjs",
    "read_tfjs_topology",
    "tfjs_sha256",
]

SUPPORTED_LAYERS = (
    "InputLayer",
    "Conv3D",
    "Activation",
    "ReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout3D",
)
_ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "elu",
    "selu",
    "sigmoid",
    "tanh",
    "softplus",
    "swish",
    "silu",
    "softmax",
    "gelu",
    "gelu_new",
)
_QUANTIZED = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


@dataclass(frozen=True)
class TfjsWeight:
    """One manifest entry: ``name`` (``layer/kernel``), ``shape``, stored dtype, and bytes in its shard."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    group: int
    quantization: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        stored = self.quantization["dtype"] if self.quantization else self.dtype
        return self.size * (_QUANTIZED[stored].itemsize if stored in _QUANTIZED else 4)


@dataclass(frozen=True)
class TfjsLayer:
    """One Keras layer: its name, class, the layer feeding it, and its config as written."""

    name: str
    class_name: str
    inbound: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """One line for a model card, e.g. ``conv3d_2: Conv3D 21 filters 3x3x3 dilation 2 same``."""
        c = self.config
        if self.class_name == "Conv3D":
            k = "x".join(str(v) for v in _triple(c.get("kernel_size", 1)))
            d = _triple(c.get("dilation_rate", 1))
            s = _triple(c.get("strides", 1))
            text = f"{self.name}: Conv3D {c.get('filters')} filters {k}"
            if d != (1, 1, 1):
                text += f" dilation {'x'.join(map(str, d)) if len(set(d)) > 1 else d[0]}"
            if s != (1, 1, 1):
                text += f" stride {'x'.join(map(str, s))}"
            text += f" {c.get('padding', 'valid')}"
            if c.get("activation", "linear") != "linear":
                text += f" {c['activation']}"
            return text
        if self.class_name == "Activation":
            return f"{self.name}: {c.get('activation')}"
        return f"{self.name}: {self.class_name}"


@dataclass(frozen=True)
class TfjsTopology:
    """What ``model.json`` says, read without touching the weight shards.

    Attributes
    ----------
    path : Path
        The ``model.json``.
    input_shape : tuple of int or None
        Keras input shape without the batch axis, ``(X, Y, Z, C)`` (``None`` for a free size).
    layers : tuple of TfjsLayer
        In graph order, input first.
    weights : tuple of TfjsWeight
        Manifest order.
    shards : tuple of tuple of str
        Per manifest group, its shard file names (relative to ``path``'s folder), in order.
    generated_by, keras_version : str
        Provenance fields of ``model.json``.
    """

    path: Path
    input_shape: tuple[int | None, ...] | None
    layers: tuple[TfjsLayer, ...]
    weights: tuple[TfjsWeight, ...]
    shards: tuple[tuple[str, ...], ...]
    generated_by: str = ""
    keras_version: str = ""

    @property
    def n_parameters(self) -> int:
        """Total number of values in the manifest."""
        return sum(w.size for w in self.weights)

    @property
    def in_channels(self) -> int | None:
        return self.input_shape[-1] if self.input_shape else None

    @property
    def out_channels(self) -> int | None:
        """``filters`` of the last Conv3D (the number of classes for a segmenter)."""
        convs = [layer for layer in self.layers if layer.class_name == "Conv3D"]
        return int(convs[-1].config["filters"]) if convs else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for a model card."""
        return {
            "format": "tfjs layers-model",
            "generated_by": self.generated_by,
            "keras_version": self.keras_version,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "n_parameters": self.n_parameters,
            "n_layers": len(self.layers),
            "layers": [layer.describe() for layer in self.layers],
        }


def _triple(value: Any) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) == 1:
        out = out * 3
    if len(out) != 3:
        raise ValueError(f"expected 3 values, got {list(value)}")
    return out  # type: ignore[return-value]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: no such TF.js model.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or "modelTopology" not in data or "weightsManifest" not in data:
        raise ModelError(f"{path}: not a TF.js layers model (no modelTopology and weightsManifest)")
    fmt = data.get("format")
    if fmt not in (None, "layers-model"):
        raise ModelError(
            f"{path}: format {fmt!r} is a TF.js graph model; only layers models (format 'layers-model') load"
        )
    return data


def _layers(path: Path, topology: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    config = topology.get("model_config", topology)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelError(f"{path}: modelTopology holds no model_config")
    kind = config["class_name"]
    inner = config.get("config")
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers")
    if kind not in ("Functional", "Model", "Sequential") or not isinstance(layers, list) or not layers:
        raise ModelError(
            f"{path}: model_config is {kind!r} with no layer list; expected Functional or Sequential"
        )
    return layers, kind


def _inbound(layer: dict[str, Any]) -> tuple[str, ...]:
    nodes = layer.get("inbound_nodes") or []
    names: list[str] = []
    for node in nodes:
        # Keras 2: [[name, node_index, tensor_index, kwargs], ...]; Keras 3: {"args": [...]}
        entries = node.get("args", []) if isinstance(node, dict) else node
        for entry in entries:
            if isinstance(entry, list) and entry and isinstance(entry[0], str):
                names.append(entry[0])
            elif isinstance(entry, dict):
                hist = entry.get("config", {}).get("keras_history") or []
                if hist:
                    names.append(hist[0])
    return tuple(names)


def _manifest(path: Path, manifest: Any) -> tuple[tuple[TfjsWeight, ...], tuple[tuple[str, ...], ...]]:
    if not isinstance(manifest, list):
        raise ModelError(f"{path}: weightsManifest must be a list of groups")
    weights: list[TfjsWeight] = []
    shards: list[tuple[str, ...]] = []
    for g, group in enumerate(manifest):
        paths = tuple(str(p) for p in group.get("paths", []))
        for p in paths:
            if Path(p).is_absolute() or ".." in Path(p).parts:
                raise ModelError(f"{path}: shard path {p!r} must be a file name beside model.json")
        shards.append(paths)
        for w in group.get("weights", []):
            quant = w.get("quantization")
            if quant is not None and quant.get("dtype") not in _QUANTIZED:
                raise ModelError(
                    f"{path}: weight {w.get('name')!r} is quantized as {quant.get('dtype')!r}; "
                    f"the TF.js loader reads {', '.join(_QUANTIZED)} quantization only"
                )
            if w.get("dtype", "float32") != "float32":
                raise ModelError(
                    f"{path}: weight {w.get('name')!r} has dtype {w.get('dtype')!r}; "
                    "the TF.js loader reads float32 weights only"
                )
            shape = tuple(int(v) for v in w.get("shape", []))
            weights.append(TfjsWeight(str(w["name"]), shape, "float32", g, quant))
    return tuple(weights), tuple(shards)


def read_tfjs_topology(path: str | os.PathLike[str]) -> TfjsTopology:
    """The layers and weight manifest of a TF.js layers model (``model.json``), shards unread.

    Parameters
    ----------
    path : path-like
        The ``model.json`` file (or the folder holding it).

    Raises
    ------
    ModelError
        Not a layers model, no layer list, a malformed manifest or an unreadable quantization.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    data = _read_json(path)
    raw, kind = _layers(path, data["modelTopology"])
    layers: list[TfjsLayer] = []
    input_shape = None
    for i, layer in enumerate(raw):
        cfg = layer.get("config") or {}
        name = str(layer.get("name") or cfg.get("name") or f"layer_{i}")
        inbound = _inbound(layer)
        if kind == "Sequential" and not inbound and layers:
            inbound = (layers[-1].name,)
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        if shape and input_shape is None:
            input_shape = tuple(None if v is None else int(v) for v in shape[1:])
        layers.append(TfjsLayer(name, str(layer.get("class_name")), inbound, cfg))
    weights, shards = _manifest(path, data["weightsManifest"])
    return TfjsTopology(
        path=path,
        input_shape=input_shape,
        layers=tuple(layers),
        weights=weights,
        shards=shards,
        generated_by=str(data.get("generatedBy") or ""),
        keras_version=str(data["modelTopology"].get("keras_version") or ""),
    )


def tfjs_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 over ``model.json``'s bytes then every shard's, in manifest order."""
    topo = read_tfjs_topology(path)
    digest = hashlib.sha256(topo.path.read_bytes())
    for group in topo.shards:
        for name in group:
            shard = topo.path.parent / name
            if not shard.is_file():
                raise ModelError(f"{topo.path}: weight shard {name} is missing")
            with open(shard, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _read_weights(topo: TfjsTopology) -> dict[str, np.ndarray]:
    """Every manifest weight as float32, read from each group's concatenated shards."""
    out: dict[str, np.ndarray] = {}
    for g, group in enumerate(topo.shards):
        blobs = []
        for name in group:
            shard = topo.path.parent / name
            if not shard.is_file():
                raise ModelError(f"{topo.path}: weight shard {name} is missing")
            blobs.append(shard.read_bytes())
        blob = b"".join(blobs)
        members = [w for w in topo.weights if w.group == g]
        expected = sum(w.nbytes for w in members)
        if len(blob) != expected:
            raise ModelError(
                f"{topo.path}: weight group {g} ({', '.join(group)}) holds {len(blob)} bytes "
                f"but its manifest describes {expected}"
            )
        offset = 0
        for w in members:
            q = w.quantization
            stored = _QUANTIZED[q["dtype"]] if q else np.dtype("<f4")
            values = np.frombuffer(blob, dtype=stored, count=w.size, offset=offset)
            if q and q["dtype"] != "float16":
                values = values.astype(np.float64) * float(q["scale"]) + float(q["min"])
            out[w.name] = values.astype(np.float32).reshape(w.shape)
            offset += w.nbytes
    return out


def _chain(topo: TfjsTopology) -> list[TfjsLayer]:
    """The layers in order, input first, refusing a graph that branches or merges."""
    path = topo.path
    for layer in topo.layers:
        if layer.class_name not in SUPPORTED_LAYERS:
            raise ModelError(
                f"{path}: layer {layer.name!r} is {layer.class_name}, which the TF.js loader does not "
                f"support (supported: {', '.join(SUPPORTED_LAYERS)})"
            )
        if len(layer.inbound) > 1:
            raise ModelError(
                f"{path}: layer {layer.name!r} ({layer.class_name}) takes {len(layer.inbound)} inputs "
                f"({', '.join(layer.inbound)}); the TF.js loader loads a chain of layers only"
            )
    consumers: dict[str, list[str]] = {}
    for layer in topo.layers:
        for src in layer.inbound:
            consumers.setdefault(src, []).append(layer.name)
    for src, users in consumers.items():
        if len(users) > 1:
            raise ModelError(
                f"{path}: layer {src!r} feeds {len(users)} layers ({', '.join(users)}); "
                "the TF.js loader loads a chain of layers only"
            )
    by_name = {layer.name: layer for layer in topo.layers}
    starts = [layer for layer in topo.layers if not layer.inbound]
    if len(starts) != 1:
        raise ModelError(f"{path}: the model has {len(starts)} inputs; the TF.js loader takes one")
    order = [starts[0]]
    while order[-1].name in consumers:
        order.append(by_name[consumers[order[-1].name][0]])
    if len(order) != len(topo.layers):
        unused = sorted(set(by_name) - {layer.name for layer in order})
        raise ModelError(f"{path}: layers {', '.join(unused)} are not on the path from the input")
    return order


def _activation(name: str, where: str) -> Any:
    import torch.nn as nn

    table = {
        "linear": nn.Identity,
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "softplus": nn.Softplus,
        "swish": nn.SiLU,
        "silu": nn.SiLU,
        "softmax": lambda: nn.Softmax(dim=1),
        "gelu": lambda: nn.GELU(approximate="none"),
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
    }
    if name not in table:
        raise ModelError(
            f"{where} uses activation {name!r}, which the TF.js loader does not support "
            f"(supported: {', '.join(_ACTIVATIONS)})"
        )
    return table[name]()


def _take(weights: dict[str, np.ndarray], layer: str, kind: str) -> np.ndarray | None:
    """``layer/kind`` from the manifest (exact name, else the one name ending in ``/layer/kind``)."""
    key = f"{layer}/{kind}"
    if key in weights:
        return weights.pop(key)
    hits = [k for k in weights if k.endswith(f"/{key}") or k.split(":")[0] == key]
    return weights.pop(hits[0]) if len(hits) == 1 else None


def _conv(layer: TfjsLayer, in_ch: int, weights: dict[str, np.ndarray], where: str) -> Any:
    import torch

    from ._tfjs_nn import KerasConv3d

    c = layer.config
    if c.get("data_format", "channels_last") != "channels_last":
        raise ModelError(f"{where}: data_format {c.get('data_format')!r}; only channels_last loads")
    padding = str(c.get("padding", "valid")).lower()
    if padding not in ("same", "valid"):
        raise ModelError(f"{where}: padding {padding!r}; the TF.js loader supports 'same' and 'valid'")
    try:
        k, s, d = (_triple(c.get(key, 1)) for key in ("kernel_size", "strides", "dilation_rate"))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: {exc}") from None
    filters, groups, use_bias = int(c["filters"]), int(c.get("groups", 1) or 1), bool(c.get("use_bias", True))
    kernel = _take(weights, layer.name, "kernel")
    want = (*k, in_ch // max(groups, 1), filters)
    if kernel is None:
        raise ModelError(f"{where}: the manifest has no weight {layer.name}/kernel")
    if in_ch % groups or tuple(kernel.shape) != want:
        raise ModelError(
            f"{where}: kernel {layer.name}/kernel has shape {list(kernel.shape)} "
            f"but the layer needs {list(want)}"
        )
    bias = _take(weights, layer.name, "bias") if use_bias else None
    if use_bias and (bias is None or tuple(bias.shape) != (filters,)):
        got = "none" if bias is None else f"shape {list(bias.shape)}"
        raise ModelError(f"{where}: bias {layer.name}/bias must have shape [{filters}], got {got}")
    act = _activation(str(c.get("activation", "linear")), where)
    module = KerasConv3d(in_ch, filters, k, s, d, groups, use_bias, padding, act)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))))
        if bias is not None:
            module.bias.copy_(torch.from_numpy(bias))
    return module


def _simple(layer: TfjsLayer, where: str) -> Any:
    import torch.nn as nn

    c = layer.config
    if layer.class_name == "Activation":
        return _activation(str(c.get("activation", "linear")), where)
    if layer.class_name == "ReLU":
        if c.get("negative_slope") or c.get("threshold") or c.get("max_value") not in (None, 6, 6.0):
            raise ModelError(f"{where}: ReLU with negative_slope/threshold is not supported")
        return nn.ReLU6() if c.get("max_value") is not None else nn.ReLU()
    if layer.class_name == "ELU":
        return nn.ELU(alpha=float(c.get("alpha", 1.0)))
    if layer.class_name == "Softmax":
        if c.get("axis", -1) not in (-1, 4):
            raise ModelError(
                f"{where}: Softmax over axis {c.get('axis')}; only the channel axis is supported"
            )
        return nn.Softmax(dim=1)
    return nn.Identity()  # Dropout, SpatialDropout3D: identity at inference


def load_tfjs(path: str | os.PathLike[str]) -> Any:
    """A TF.js layers model as an eval-mode float32 ``torch.nn.Module`` (no TensorFlow needed).

    Parameters
    ----------
    path : path-like
        ``model.json`` (or its folder); shards are read from beside it.

    Returns
    -------
    torch.nn.Module
        A ``torch.nn.Sequential`` whose children are named after the Keras layers (dots replaced by
        ``_``; the input layer dropped). Input ``(N, C, X, Y, Z)``, output ``(N, classes, X, Y, Z)``:
        Keras' ``[N, X, Y, Z, C]`` arrays moved by ``permute(0, 4, 1, 2, 3)``, nothing flipped.

    Raises
    ------
    ModelError
        An unsupported layer or activation (named, with its class), a graph that is not a chain,
        a missing shard, shards whose size differs from the manifest's, or a weight whose name,
        shape or count does not fit the layers.
    """
    import torch
    import torch.nn as nn

    topo = read_tfjs_topology(path)
    order = _chain(topo)
    weights = _read_weights(topo)
    in_ch = topo.in_channels or 1
    children: dict[str, nn.Module] = {}
    for layer in order:
        where = f"{topo.path}: layer {layer.name!r} ({layer.class_name})"
        if layer.class_name == "InputLayer":
            continue
        key = layer.name.replace(".", "_") or f"layer_{len(children)}"
        if layer.class_name == "Conv3D":
            children[key] = _conv(layer, in_ch, weights, where)
            in_ch = int(layer.config["filters"])
            if layer.name.endswith("_gn"):
                # brainchop's name encoding (mindgrab): after a "*_gn" layer it z-scores each
                # channel over the volume, (x - mean) / sqrt(var + 1e-5), no learned affine
                # (inference.js: `if (layer.name.endsWith('_gn')) LayerNormInPlace(...)`)
                children[f"{key}_norm"] = nn.InstanceNorm3d(in_ch, eps=1e-5)
        else:
            children[key] = _simple(layer, where)
    if weights:
        extra = sorted(weights)
        raise ModelError(f"{topo.path}: {len(extra)} manifest weights belong to no layer (e.g. {extra[0]!r})")
    net = nn.Sequential(OrderedDict(children)).to(torch.float32)
    net.eval()
    return net
