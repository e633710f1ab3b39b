"""Loading models without executing pickled code.

- ``state_dict`` files load with ``torch.load(weights_only=True)``: only tensors and plain
  containers are unpickled; anything else is refused with a message saying what to do.
- TorchScript archives load with ``torch.jit.load``: their code is TorchScript, run by
  TorchScript's interpreter, not arbitrary Python, and their data is read with a
  restricted unpickler.
- TensorFlow.js layers models (``format: tfjs``, ``weights:`` their ``model.json``) are JSON
  plus raw float32 shards, rebuilt as PyTorch modules by :mod:`.tfjs` (no TensorFlow).
- Architectures come from MONAI (``monai:DenseNet121``) or an installed module
  (``package.module:Class``), never from the model file.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.formats import file_sha256
from .spec import ModelError, ModelSpec

__all__ = ["LoadedModel", "build_architecture", "file_sha256", "load_model", "load_state_dict"]

_ADVICE = (
    "save the weights with torch.save(model.state_dict(), path) and give the architecture in the "
    "spec, or export TorchScript with torch.jit.script(model).save(path)"
)


def is_torchscript(path: str | os.PathLike[str]) -> bool:
    """A TorchScript archive is a zip holding a ``code/`` folder (torch.save zips have none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.startswith("code/") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Tensors from a ``torch.save``-d state_dict, refusing anything that needs code to unpickle.

    Accepts a bare state_dict, or a checkpoint dict holding one under ``state_dict`` or
    ``model``; strips a ``module.`` prefix (DataParallel).

    Raises
    ------
    ModelError
        Naming the file: not a PyTorch file, refused pickle (and what to do instead), or not
        a mapping of tensors.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelError(
            f"{path}: refused: the file asks to unpickle arbitrary Python objects, which can run code "
            f"({first}); {_ADVICE}"
        ) from None
    except Exception as exc:
        raise ModelError(
            f"{path}: not a PyTorch weights file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: does not hold a state_dict (a mapping of parameter names to tensors)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def build_architecture(name: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Instantiate ``monai:NetworkName`` or ``package.module:Class`` with ``kwargs``."""
    kwargs = dict(kwargs or {})
    if ":" not in name:
        raise ModelError(f"architecture must be 'monai:Name' or 'package.module:Class', got {name!r}")
    module_name, _, attr = name.partition(":")
    if module_name == "monai":
        try:
            import monai.networks.nets as nets
        except ImportError:
            raise ModelError("MONAI is needed for this architecture: pip install monai") from None
        target = getattr(nets, attr, None)
        if target is None:
            raise ModelError(f"MONAI has no network named {attr!r}")
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(f"cannot import architecture module {module_name!r} ({exc})") from None
        target = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise ModelError(f"module {module_name!r} has no attribute {attr!r}")
    try:
        return target(**kwargs)
    except TypeError as exc:
        raise ModelError(f"cannot build {name} with {kwargs}: {exc}") from None


@dataclass
class LoadedModel:
    """A model ready to run: its spec, the eval-mode module on CPU, and its provenance."""

    spec: ModelSpec
    module: Any
    sha256: str
    path: str | None = None

    def __call__(self, x: Any) -> Any:
        return self.module(x)

    def provenance(self) -> dict[str, Any]:
        return {"name": self.spec.name, "sha256": self.sha256, "path": self.path, "source": self.spec.source}


def load_model(spec: ModelSpec, *, module: Any = None) -> LoadedModel:
    """Load the model a spec describes (or wrap an already-built ``module``).

    Raises
    ------
    ModelError
        One sentence naming the file and the problem.
    """
    import torch

    if module is not None:
        digest = hashlib.sha256()
        for k, v in module.state_dict().items():
            digest.update(k.encode())
            digest.update(v.detach().cpu().numpy().tobytes())
        module.eval()
        return LoadedModel(spec, module, digest.hexdigest(), None)
    if not spec.weights:
        raise ModelError(f"model '{spec.name}': the spec names no weights file")
    path = Path(spec.weights)
    if spec.format == "monai_bundle" or (spec.format == "auto" and path.is_dir()):
        from .loaders.bundle import build_network, bundle_root, load_bundle_weights

        root = bundle_root(path)
        if root is not None:
            weights = load_bundle_weights(root)
            net = _fitted(build_network(root), load_state_dict(weights), weights, f"the bundle's {root.name}")
            net.eval()
            return LoadedModel(spec, net, file_sha256(weights), str(root))
        if spec.format == "monai_bundle":
            raise ModelError(f"{path}: not a MONAI bundle (configs/metadata.json and configs/inference.json)")
    if path.is_dir() and spec.format in ("tfjs", "auto") and (path / "model.json").is_file():
        path = path / "model.json"
    if not path.is_file():
        raise ModelError(f"{path}: no such model file (model '{spec.name}')")
    fmt = spec.format
    if fmt == "auto":
        fmt = _format_of(path)
    if fmt == "tfjs":
        return _load_tfjs(spec, path)
    if fmt == "torch_export":
        return _load_exported(spec, path)
    if fmt == "onnx":
        from .loaders.onnx import load_onnx

        return LoadedModel(spec, load_onnx(path, spec).eval(), file_sha256(path), str(path))
    if fmt == "torchscript":
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelError(
                f"{path}: not a TorchScript archive ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
    else:
        if not spec.architecture:
            raise ModelError(
                f"{path}: a state_dict needs an architecture in the spec "
                "('monai:Name' or 'package.module:Class')"
            )
        net = _fitted(
            build_architecture(spec.architecture, spec.architecture_kwargs),
            load_state_dict(path),
            path,
            spec.architecture,
        )
    net.eval()
    return LoadedModel(spec, net, file_sha256(path), str(path))


def _fitted(net: Any, state: dict[str, Any], path: Path, architecture: str) -> Any:
    """``net`` with the weights ``state``; every missing, unexpected or misshapen one named."""
    # shapes first: load_state_dict raises on a size mismatch even when not strict
    own = net.state_dict()
    mismatch = [
        f"{k} has shape {tuple(v.shape)} in the file but {tuple(own[k].shape)} in the architecture"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    fitting = {k: v for k, v in state.items() if k not in own or tuple(own[k].shape) == tuple(v.shape)}
    result = net.load_state_dict(fitting, strict=False)
    if result.missing_keys or result.unexpected_keys or mismatch:
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} parameters missing (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[0]})")
        parts.extend(mismatch[:1])
        raise ModelError(f"{path}: the weights do not fit {architecture}: {'; '.join(parts)}")
    return net


def _format_of(path: Path) -> str:
    """The format of a model file, from its name and first bytes."""
    from .loaders.exported import is_exported_program

    suffix = path.suffix.lower()
    if suffix == ".json":
        return "tfjs"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2" or is_exported_program(path):
        return "torch_export"
    return "torchscript" if is_torchscript(path) else "state_dict"


def _load_exported(spec: ModelSpec, path: Path) -> LoadedModel:
    """A ``torch.export`` program; its exported spatial shape fills a spec that gives none."""
    from .loaders.exported import load_exported

    net, shape = load_exported(path)
    spatial = tuple(shape[2:]) if shape is not None and len(shape) == 5 else ()
    if spatial and all(isinstance(v, int) for v in spatial):
        given = spec.input.size or spec.input.patch_size
        model_order = spatial[::-1] if spec.input.axes == "xyz" else spatial  # the spec's (z, y, x)
        if given is None:
            key = "patch_size" if spec.task == "segmentation" else "size"
            setattr(spec.input, key, tuple(int(v) for v in model_order))
        elif tuple(given) != tuple(model_order):
            raise ModelError(
                f"{path}: the program was exported for input {list(spatial)} but the spec '{spec.name}' "
                f"says {list(given)} (z, y, x): export it with dynamic spatial dimensions or fix the spec"
            )
    net.eval()
    return LoadedModel(spec, net, file_sha256(path), str(path))


def _load_tfjs(spec: ModelSpec, path: Path) -> LoadedModel:
    """A TF.js layers model, checked against the spec's channels and classes."""
    from .tfjs import load_tfjs, read_tfjs_topology, tfjs_sha256

    topo = read_tfjs_topology(path)
    if topo.in_channels is not None and topo.in_channels != spec.input.channels:
        raise ModelError(
            f"{path}: the model takes {topo.in_channels} input channels but the spec "
            f"'{spec.name}' says {spec.input.channels}"
        )
    if topo.out_channels is not None and topo.out_channels != len(spec.classes):
        raise ModelError(
            f"{path}: the model has {topo.out_channels} output channels but the spec "
            f"'{spec.name}' names {len(spec.classes)} classes"
        )
    net = load_tfjs(path)
    return LoadedModel(spec, net, tfjs_sha256(path), str(path))
