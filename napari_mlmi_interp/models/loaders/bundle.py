"""MONAI bundles (the MONAI Model Zoo format) as models, without running the bundle's code.

A bundle folder holds ``configs/metadata.json``, ``configs/inference.json`` (or ``.yaml``) and
``models/model.pt``. :func:`bundle_spec` turns it into a :class:`~..spec.ModelSpec`:

- task and classes from ``metadata.json``'s ``network_data_format`` (the output's ``format``
  and ``channel_def``), input channels from the input's ``num_channels``, the modality into
  the spec's domain;
- the preprocessing in ``inference``'s ``preprocessing`` mapped onto the spec's invertible
  steps (:data:`MAPPED`), and a ``SlidingWindowInferer``'s ``roi_size`` onto the patch size;
  a transform with no counterpart is named in one line that says what to write in a spec.

:func:`build_network` reads ``network_def`` with ``monai.bundle.ConfigParser``, follows its
``@references``, and builds the MONAI network from the literal definition: a bundle's ``$``
expressions are Python (``eval``) and its ``_target_`` may name any callable, and a model
file must load without running code, so neither is evaluated (one line says why). The
weights (``models/model.pt``) are read with ``torch.load(weights_only=True)``.

Axis conventions: MONAI arrays are ``(x, y, z)`` after ``LoadImaged`` and ``axcodes`` use the
nibabel sense, so a bundle's spec has ``axes: xyz``; its ``pixdim`` and ``roi_size`` (x, y, z)
become the spec's ``spacing_mm`` and ``patch_size`` in array order (z, y, x).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import Crop, Domain, InputSpec, ModelError, ModelSpec, Normalization

__all__ = ["MAPPED", "build_network", "bundle_root", "bundle_spec", "is_bundle"]

_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")
#: Transforms that change nothing the model sees here (reading, channel axis, dtype).
_IGNORED = {
    "LoadImage",
    "EnsureChannelFirst",
    "AddChannel",
    "EnsureType",
    "ToTensor",
    "CastToType",
    "Identity",
    "ToDevice",
}
#: Transforms mapped onto the spec's steps (with ``d``-suffixed dictionary forms).
MAPPED = (
    "Orientation",
    "Spacing",
    "ScaleIntensityRange",
    "NormalizeIntensity",
    "ScaleIntensity",
    "CropForeground",
    "SpatialPad",
    "ResizeWithPadOrCrop",
    *sorted(_IGNORED),
)


def _config_file(root: Path) -> Path | None:
    return next((root / "configs" / n for n in _CONFIGS if (root / "configs" / n).is_file()), None)


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a bundle folder (``configs/metadata.json`` and an inference config)."""
    root = Path(path)
    return root.is_dir() and (root / "configs" / "metadata.json").is_file() and _config_file(root) is not None


def bundle_root(path: str | os.PathLike[str]) -> Path | None:
    """The bundle folder ``path`` is, or is a file of (``configs/...``, ``models/model.pt``); else None."""
    p = Path(path)
    if is_bundle(p):
        return p
    # a file of configs/ or models/ (a spec the user writes beside them is theirs, not the bundle's)
    if p.is_file() and p.parent.name in ("configs", "models") and is_bundle(p.parent.parent):
        return p.parent.parent
    return None


def _parser(root: Path) -> Any:
    try:
        from monai.bundle import ConfigParser
    except ImportError:  # pragma: no cover - monai is a dependency
        raise ModelError("MONAI bundles need MONAI: pip install monai") from None
    parser = ConfigParser()
    try:
        parser.read_config(str(_config_file(root)))
        parser.read_meta(str(root / "configs" / "metadata.json"))
    except Exception as exc:
        raise ModelError(
            f"{root}: the bundle's configs cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    parser["bundle_root"] = str(root)
    return parser


def _literal(parser: Any, value: Any, where: str, seen: tuple[str, ...] = (), *, routing: bool = True) -> Any:
    """``value`` with every ``@reference`` (and ``$@reference``) replaced by its literal value.

    ``routing=False`` leaves out the arguments that only route data (:data:`_ROUTING`).

    Raises
    ------
    ModelError
        A ``$`` expression (Python) anywhere on the way, or a reference that does not exist.
    """
    if not routing:
        value = _without_routing(value)
    if isinstance(value, dict):
        return {k: _literal(parser, v, where, seen, routing=routing) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(parser, v, where, seen, routing=routing) for v in value]
    if isinstance(value, str) and (value.startswith("@") or value.startswith("$@")):
        ref = value.lstrip("$@")
        if not ref.replace("::", "#").replace("#", "").replace("_", "").isalnum() or ref in seen:
            raise ModelError(f"{where}: {value!r} is an expression, not a plain reference")
        try:
            target = parser.get(ref.replace("::", "#"))
        except (KeyError, ValueError, TypeError):
            target = None
        if target is None:
            raise ModelError(f"{where}: the reference {value!r} names nothing in the bundle's configs")
        return _literal(parser, target, where, (*seen, ref), routing=routing)
    if isinstance(value, str) and value.startswith("%"):
        raise ModelError(
            f"{where}: {value[:60]!r} is a macro that reads other config content; not followed here"
        )
    if isinstance(value, str) and value.startswith("$"):
        instead = (
            "architecture and architecture_kwargs"
            if "network_def" in where
            else "input (orientation, spacing_mm, size or patch_size) and normalization"
        )
        raise ModelError(
            f"{where} computes {value[:60]!r} with Python, which a model file must not run: "
            f"write a spec for this bundle with {instead} instead"
        )
    return value


#: Transform arguments that only route data (which dictionary keys, which reader): never read here.
_ROUTING = {
    "keys",
    "allow_missing_keys",
    "meta_keys",
    "meta_key_postfix",
    "source_key",
    "image_only",
    "reader",
}


def _without_routing(value: Any) -> Any:
    """A transform list without the arguments that route data (they may be expressions)."""
    if isinstance(value, dict):
        return {k: _without_routing(v) for k, v in value.items() if k not in _ROUTING}
    if isinstance(value, list):
        return [_without_routing(v) for v in value]
    return value


def _target(item: dict[str, Any]) -> str:
    return str(item.get("_target_", "")).rsplit(".", 1)[-1]


def _network_kwargs(definition: dict[str, Any], root: Path) -> tuple[str, dict[str, Any]]:
    """``(MONAI network name, keyword arguments)`` of a literal ``network_def``.

    Only a network of ``monai.networks.nets``, with plain values: another ``_target_`` (any
    importable callable would be called), or a special key (``_requires_``, ``_mode_``,
    ``_disabled_``, ``_debug_``), is refused.
    """
    where = f"{root}: network_def"
    target = str(definition.get("_target_", ""))
    name = target.rsplit(".", 1)[-1]
    if "." in target and not target.startswith("monai.networks.nets."):
        raise ModelError(
            f"{where}: _target_ {target!r} is not a network of monai.networks.nets; write a spec instead"
        )
    special = sorted(k for k in definition if k.startswith("_") and k not in ("_target_", "_desc_"))
    if special:
        raise ModelError(f"{where}: {', '.join(special)} is not followed here; write a spec instead")

    def nested(value: Any) -> bool:
        if isinstance(value, dict):
            return "_target_" in value or any(nested(v) for v in value.values())
        return isinstance(value, list) and any(nested(v) for v in value)

    kwargs = {k: v for k, v in definition.items() if not k.startswith("_")}
    if nested(kwargs):
        raise ModelError(f"{where}: an argument builds another object (_target_); write a spec instead")
    return name, kwargs


def build_network(root: str | os.PathLike[str]) -> Any:
    """The network of ``configs/inference``'s ``network_def``.

    The configs are read, and ``@references`` followed, by ``monai.bundle.ConfigParser``; the
    network itself is built from the literal definition as a spec's ``monai:Name`` architecture
    is (:func:`~..loading.build_architecture`), so nothing of the bundle is evaluated or called:
    not a ``$`` expression, not a ``%`` macro, not a ``_target_`` outside ``monai.networks.nets``.

    Raises
    ------
    ModelError
        No ``network_def``, an expression, macro, special key or nested ``_target_`` in it (or
        in what it references), or a definition MONAI cannot build.
    """
    from ..loading import build_architecture

    root = Path(root)
    parser = _parser(root)
    raw = parser.get("network_def")
    if not isinstance(raw, dict) or "_target_" not in raw:
        raise ModelError(f"{root}: the bundle's inference config has no network_def with a _target_")
    name, kwargs = _network_kwargs(_literal(parser, raw, f"{root}: network_def"), root)
    try:
        return build_architecture(f"monai:{name}", kwargs)
    except ModelError as exc:
        raise ModelError(f"{root}: the bundle's network_def: {exc}") from None


def _network_format(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
        fmt = meta["network_data_format"]
        return {
            "meta": meta,
            "input": next(iter(fmt["inputs"].values())),
            "output": next(iter(fmt["outputs"].values())),
        }
    except (OSError, ValueError, KeyError, StopIteration, AttributeError, TypeError) as exc:
        raise ModelError(
            f"{root}: configs/metadata.json has no network_data_format with inputs and outputs "
            f"({type(exc).__name__})"
        ) from None


def _classes(output: dict[str, Any], root: Path) -> list[str]:
    channels = output.get("channel_def") or {}
    try:
        ordered = sorted(((int(k), str(v)) for k, v in channels.items()))
    except (TypeError, ValueError):
        ordered = []
    n = int(output.get("num_channels") or len(ordered) or 0)
    if ordered and [k for k, _ in ordered] == list(range(len(ordered))) and len(ordered) == n:
        return [v for _, v in ordered]
    if n <= 0:
        raise ModelError(f"{root}: metadata.json names no output channels (num_channels, channel_def)")
    return [f"class {i}" for i in range(n)]


def _task(output: dict[str, Any]) -> str:
    kind = f"{output.get('type', '')} {output.get('format', '')}".lower()
    return (
        "segmentation"
        if ("segmentation" in kind or "labels" in kind or "image" in kind)
        else "classification"
    )


def _xyz(values: Any, what: str, where: str) -> tuple:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ModelError(f"{where}: {what} must be three numbers (x, y, z), got {values!r}") from None
    if len(vals) != 3 or any(v <= 0 for v in vals):
        raise ModelError(
            f"{where}: {what} must be three positive numbers (x, y, z) of a 3D model, got {values!r}"
        )
    return tuple(vals[::-1])  # array order (z, y, x)


class _Mapping:
    """The preprocessing transforms, one by one, onto a spec's input and normalization."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.input: dict[str, Any] = {"axes": "xyz"}
        self.intensity: list[tuple[str, dict[str, Any]]] = []
        self.sizes: list[tuple[str, tuple]] = []

    def refuse(self, name: str, why: str, instead: str) -> ModelError:
        return ModelError(
            f"{self.root}: the bundle's preprocessing {name} {why}; write a spec for this model instead, "
            f"with {instead}"
        )

    def add(self, item: dict[str, Any], k: int, n: int) -> None:
        name = _target(item)
        base = name[:-1] if name.endswith("d") and name[:-1] in MAPPED else name
        where = f"{self.root}: preprocessing {name} (transform {k} of {n})"
        if base in _IGNORED:
            return
        handler = getattr(self, f"_{base}", None)
        if handler is None:
            raise self.refuse(
                name,
                f"(transform {k} of {n}) has no invertible counterpart here (mapped: "
                f"{', '.join(t for t in MAPPED if t not in _IGNORED)})",
                "input (orientation, spacing_mm, size or patch_size, crop) and normalization written out",
            )
        if self.input.get("crop") is not None and base in (
            "ScaleIntensityRange",
            "NormalizeIntensity",
            "ScaleIntensity",
        ):
            raise self.refuse(
                name,
                "comes after CropForegroundd, which then chose its box on the raw intensities (the spec "
                "crops on the normalised image)",
                "input crop: {to: foreground, threshold: T} on the normalised image",
            )
        try:
            handler(item, where)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: an argument is not a number ({exc})") from None

    def _Orientation(self, item: dict[str, Any], where: str) -> None:
        codes = item.get("axcodes")
        if not isinstance(codes, str) or len(codes) != 3:
            raise ModelError(f"{where}: axcodes must be three letters such as 'RAS', got {codes!r}")
        self.input["orientation"] = codes.upper()

    def _Spacing(self, item: dict[str, Any], where: str) -> None:
        self.input["spacing_mm"] = _xyz(item.get("pixdim"), "pixdim", where)

    def _ScaleIntensityRange(self, item: dict[str, Any], where: str) -> None:
        lo, hi = float(item.get("a_min", 0)), float(item.get("a_max", 1))
        b_lo, b_hi = (
            float(item.get("b_min", 0) or 0),
            float(item.get("b_max", 1) if item.get("b_max") is not None else 1),
        )
        if not item.get("clip", False) or (b_lo, b_hi) != (0.0, 1.0) or hi <= lo:
            raise self.refuse(
                "ScaleIntensityRanged",
                f"maps [{lo:g}, {hi:g}] to [{b_lo:g}, {b_hi:g}] with clip={item.get('clip', False)} "
                "(only a clipped map to [0, 1] is a window here)",
                "normalization: {kind: window, center: C, width: W} (clipped to [0, 1])",
            )
        self.intensity.append(("window", {"center": (lo + hi) / 2, "width": hi - lo}))

    def _NormalizeIntensity(self, item: dict[str, Any], where: str) -> None:
        if item.get("subtrahend") is not None or item.get("divisor") is not None:
            raise self.refuse(
                "NormalizeIntensityd", "uses a fixed subtrahend or divisor", "normalization: {kind: zscore}"
            )
        self.intensity.append(("zscore", {"nonzero": bool(item.get("nonzero", False))}))

    def _ScaleIntensity(self, item: dict[str, Any], where: str) -> None:
        lo = item.get("minv", 0.0)
        hi = item.get("maxv", 1.0)
        if item.get("factor") is not None or ((lo, hi) != (0, 1) and (float(lo), float(hi)) != (0.0, 1.0)):
            raise self.refuse(
                "ScaleIntensityd",
                f"scales to [{lo}, {hi}] (only [0, 1] is minmax here)",
                "normalization: {kind: minmax}",
            )
        self.intensity.append(("minmax", {}))

    def _CropForeground(self, item: dict[str, Any], where: str) -> None:
        if item.get("select_fn") is not None or item.get("k_divisible", 1) not in (1, [1, 1, 1]):
            raise self.refuse(
                "CropForegroundd",
                "selects the foreground with its own function",
                "input crop: {to: foreground, threshold: T}",
            )
        margin = item.get("margin", 0)
        margin = max(margin) if isinstance(margin, (list, tuple)) else margin
        spacing = self.input.get("spacing_mm")
        self.input["crop"] = Crop(
            to="foreground", threshold=0.0, padding_mm=float(margin) * (max(spacing) if spacing else 1.0)
        )

    def _SpatialPad(self, item: dict[str, Any], where: str) -> None:
        self.sizes.append(("SpatialPadd", _xyz(item.get("spatial_size"), "spatial_size", where)))

    def _ResizeWithPadOrCrop(self, item: dict[str, Any], where: str) -> None:
        self.sizes.append(("ResizeWithPadOrCropd", _xyz(item.get("spatial_size"), "spatial_size", where)))

    def normalization(self) -> Normalization:
        steps = self.intensity
        if not steps:
            return Normalization(kind="none")
        if len(steps) == 1:
            kind, kwargs = steps[0]
            return Normalization(kind=kind, **kwargs)
        last_kind, last = steps[-1]
        # a z-score over every voxel undoes any affine step before it (minmax, an unclipped scale)
        if last_kind == "zscore" and not last["nonzero"] and all(k == "minmax" for k, _ in steps[:-1]):
            return Normalization(kind="zscore", nonzero=False)
        raise self.refuse(
            " + ".join(k for k, _ in steps),
            "chains intensity steps that do not reduce to one",
            "one normalization (zscore, window, minmax, percentile)",
        )


def _preprocessing(parser: Any, root: Path) -> list[dict[str, Any]]:
    raw = parser.get("preprocessing")
    if raw is None:
        return []
    where = f"{root}: preprocessing"
    pre = _literal(parser, raw, where, routing=False)
    transforms = pre.get("transforms", []) if isinstance(pre, dict) else pre
    if not isinstance(transforms, list) or not all(isinstance(t, dict) for t in transforms):
        raise ModelError(f"{root}: the bundle's preprocessing is not a Compose of transforms")
    return transforms


def _inferer_patch(parser: Any, root: Path) -> tuple | None:
    raw = parser.get("inferer")
    if not isinstance(raw, dict):
        return None
    inferer = _literal(parser, raw, f"{root}: inferer")
    if _target(inferer) == "SlidingWindowInferer":
        return _xyz(inferer.get("roi_size"), "the SlidingWindowInferer's roi_size", f"{root}: inferer")
    return None


def _divisible_by(parser: Any, root: Path, inp: dict[str, Any]) -> int | None:
    """What the network's grid must be a multiple of: ``"8*n"`` in the metadata, or its downsampling.

    A UNet's ``strides`` multiply; a SegResNet halves once per ``blocks_down`` level after the first.
    """
    for dim in inp.get("spatial_shape") or []:
        if isinstance(dim, str) and "*n" in dim.replace(" ", ""):
            try:
                return int(dim.replace(" ", "").split("*")[0])
            except ValueError:
                pass
    net = parser.get("network_def") or {}
    strides = net.get("strides") if isinstance(net, dict) else None
    if isinstance(strides, list) and strides and all(isinstance(s, int) for s in strides):
        return int(np.prod(strides))
    blocks = net.get("blocks_down") if isinstance(net, dict) else None
    if isinstance(blocks, list) and blocks:
        return 2 ** (len(blocks) - 1)
    return None


def _cam_layer(root: Path) -> list[str]:
    """The last 3D convolution, where Grad-CAM's coarse map is taken (none for other networks)."""
    import torch

    net = build_network(root)
    convs = [name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv3d)]
    return convs[-1:]


def _input_of(parser: Any, root: Path, mapping: _Mapping, inp: dict[str, Any], task: str) -> dict[str, Any]:
    """The spec's ``input``: the mapped steps, the channels, and the size or patch size."""
    spec_input = dict(mapping.input)
    try:
        spec_input["channels"] = int(inp.get("num_channels") or 1)
    except (TypeError, ValueError):
        raise ModelError(f"{root}: metadata.json's input num_channels is not a number") from None
    patch = _inferer_patch(parser, root)
    if any(name == "SpatialPadd" for name, _ in mapping.sizes) and patch is None:
        # sliding windows pad by themselves; a fixed spec size would also crop
        raise mapping.refuse(
            "SpatialPadd", "only pads, while a fixed input size also crops", "input size or patch_size"
        )
    sizes = [v for name, v in mapping.sizes if name != "SpatialPadd"]
    shape = inp.get("spatial_shape") or []
    fixed = None
    if len(shape) == 3 and all(isinstance(v, int) for v in shape):
        fixed = _xyz(shape, "spatial_shape", f"{root}: metadata.json")
    elif isinstance(shape, list) and len(shape) not in (0, 3):
        raise ModelError(
            f"{root}: the bundle's network takes {len(shape)}D input; only 3D models are supported"
        )
    if patch is not None:
        spec_input["patch_size"] = tuple(int(v) for v in patch)
    elif sizes:
        spec_input["size"] = tuple(int(v) for v in sizes[-1])
    elif fixed is not None:
        key = "patch_size" if inp.get("is_patch_data") and task == "segmentation" else "size"
        spec_input[key] = tuple(int(v) for v in fixed)
    if "crop" not in spec_input and "size" not in spec_input:  # a fixed size is the network's own
        spec_input["divisible_by"] = _divisible_by(parser, root, inp)
    return spec_input


def bundle_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The spec of the bundle at ``path`` (its folder, or a file in it); ``weights`` is the folder.

    Raises
    ------
    ModelError
        Not a bundle, a 2D network, no output channels, or a preprocessing step that cannot
        be mapped (one line that says what to write in a spec instead).
    """
    root = bundle_root(path)
    if root is None:
        raise ModelError(f"{path}: not a MONAI bundle (configs/metadata.json and configs/inference.json)")
    parser = _parser(root)
    fmt = _network_format(root)
    meta, inp, out = fmt["meta"], fmt["input"], fmt["output"]
    task = _task(out)
    mapping = _Mapping(root)
    transforms = _preprocessing(parser, root)
    for k, item in enumerate(transforms, start=1):
        mapping.add(item, k, len(transforms))
    spec_input = _input_of(parser, root, mapping, inp, task)
    modality = str(inp.get("modality") or "").upper()
    spec = ModelSpec(
        name=str(meta.get("name") or root.name),
        task=task,
        classes=_classes(out, root),
        format="monai_bundle",
        weights=str(root),
        input=InputSpec(**spec_input),
        normalization=mapping.normalization(),
        cam_layers=_cam_layer(root),
        domain=Domain(modality=[modality])
        if modality in ("CT", "MR", "PT", "US", "CR", "DX", "MG")
        else None,
        description=str(meta.get("description") or "")[:300],
        source=f"MONAI bundle {root}",
    )
    return spec


def load_bundle_weights(root: str | os.PathLike[str]) -> Path:
    """The bundle's weights file (``models/model.pt``)."""
    path = Path(root) / "models" / "model.pt"
    if not path.is_file():
        raise ModelError(f"{root}: the bundle has no weights (models/model.pt)")
    return path
