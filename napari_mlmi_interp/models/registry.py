"""Where models come from: the built-in demo zoo, entry points, and files.

Other packages register models through the entry-point group
``napari_mlmi_interp.models``: each entry point names a callable that returns a
:class:`~napari_mlmi_interp.models.spec.ModelSpec` (weights as an absolute path inside
that package), or a ``(ModelSpec, torch.nn.Module)`` pair for a model built in code::

    [project.entry-points."napari_mlmi_interp.models"]
    my-model = "my_package.models:my_model_spec"
"""

from __future__ import annotations

import json
import os
import warnings
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from .spec import ModelError, ModelSpec

__all__ = ["ENTRY_POINT_GROUP", "available_models", "builtin_models", "entry_point_models", "resolve_model"]

ENTRY_POINT_GROUP = "napari_mlmi_interp.models"
_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def zoo_dir() -> Path:
    """The folder of the built-in models: the demo zoo (specs, weights, model cards) and the real
    brainchop models (a spec and a card each, their TF.js files in a folder of the same name)."""
    return Path(str(resources.files("napari_mlmi_interp.models").joinpath("zoo")))


def _input_voxels(spec: ModelSpec) -> int:
    size = spec.input.size or spec.input.patch_size
    return int(size[0] * size[1] * size[2]) if size else 0


def builtin_models() -> list[ModelSpec]:
    """Specs of the shipped models, cheapest first (fewest input voxels, then by name).

    The demo zoo (about 200,000 voxels, seconds on a CPU) comes before the real brainchop
    models (256³, minutes), so a panel's first, default choice answers at once.
    """
    folder = zoo_dir()
    specs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(data, dict) and "task" in data and "name" in data):
            continue  # metrics, prototype metadata
        spec = ModelSpec.from_dict(data, base=path.parent, source="builtin")
        specs.append(spec)
    return sorted(specs, key=lambda s: (_input_voxels(s), s.name))


def entry_point_models() -> list[tuple[ModelSpec, Any]]:
    """``(spec, module or None)`` for every model other packages register; broken ones warn."""
    found: list[tuple[ModelSpec, Any]] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            result = ep.load()()
            module = None
            if isinstance(result, tuple):
                result, module = result
            if not isinstance(result, ModelSpec):
                raise ModelError(f"returned {type(result).__name__}, not a ModelSpec")
            result.source = f"entry point {ep.name} ({ep.value})"
            found.append((result, module))
        except Exception as exc:
            warnings.warn(f"model entry point {ep.name!r} ({ep.value}) failed: {exc}", stacklevel=2)
    return found


def available_models() -> list[ModelSpec]:
    """Built-in and entry-point models, built-in first."""
    return builtin_models() + [spec for spec, _ in entry_point_models()]


def _embedded_spec(path: Path) -> ModelSpec | None:
    """The spec a ``torch.export`` program carries in its archive, with the program as its weights."""
    from .loaders.exported import SPEC_EXTRA_FILE, embedded_spec

    data = embedded_spec(path)
    if data is None:
        return None
    # the program is the model: an embedded spec names no other format or architecture (which
    # would build, i.e. import and call, whatever the archive says)
    data = {k: v for k, v in data.items() if k not in ("architecture", "architecture_kwargs", "format")}
    try:
        spec = ModelSpec.from_dict(
            {**data, "format": "torch_export", "weights": str(path)}, source=f"{path} ({SPEC_EXTRA_FILE})"
        )
    except ModelError as exc:
        raise ModelError(f"{path}: its embedded spec: {exc}") from None
    return spec


def resolve_model(name_or_path: str | os.PathLike[str], *, spec: str | os.PathLike[str] | None = None) -> Any:
    """A :class:`LoadedModel` from a registered name, a spec file, or a weights file + spec.

    Raises
    ------
    ModelError
        When nothing matches, with the names that exist.
    """
    from .loading import load_model

    text = str(name_or_path)
    path = Path(text)
    if spec is None and path.exists():
        from .loaders.bundle import bundle_root, bundle_spec

        if bundle_root(path) is not None:  # a bundle folder, or a file of one (From file…)
            return load_model(bundle_spec(path))
    if spec is not None:
        model_spec = ModelSpec.from_file(spec)
        if path.is_file() and path.suffix.lower() not in _SPEC_SUFFIXES:
            model_spec.weights = str(path)
        return load_model(model_spec)
    if path.is_file():
        if path.suffix.lower() in _SPEC_SUFFIXES:
            return load_model(ModelSpec.from_file(path))
        sidecars = [path.with_suffix(s) for s in _SPEC_SUFFIXES] + [
            Path(f"{path}{s}") for s in _SPEC_SUFFIXES
        ]
        for sidecar in sidecars:
            if sidecar.is_file():
                model_spec = ModelSpec.from_file(sidecar)
                model_spec.weights = str(path)
                return load_model(model_spec)
        embedded = _embedded_spec(path)
        if embedded is not None:
            return load_model(embedded)
        raise ModelError(
            f"{path}: a model file needs a spec (--spec SPEC, or a sidecar {path.stem}.yaml/.json)"
        )
    for builtin in builtin_models():
        if builtin.name == text:
            return load_model(builtin)
    for ep_spec, module in entry_point_models():
        if ep_spec.name == text:
            return load_model(ep_spec, module=module)
    names = [s.name for s in available_models()]
    raise ModelError(f"no model named {text!r} and no such file; models: {', '.join(names) or 'none'}")
