"""ONNX models (``.onnx``) converted to torch modules by ``onnx2torch`` (the optional ``onnx`` extra).

``onnx2torch`` turns each ONNX node into a module (``Conv`` into ``nn.Conv3d``, ``Relu`` into
``nn.ReLU``, ...), so every method runs on the converted model as on an eager one, layer
methods included. An ONNX file holds no code: ``onnx.load`` parses a protobuf.

Two details:

- **torchvision.** ``onnx2torch`` imports torchvision for two converters (``NonMaxSuppression``,
  ``RoiAlign``), and torchvision pulls a CUDA build of torch. Where torchvision is not
  installed, those two converters get a stand-in that refuses them in one line while the
  package is imported (no medical classification or segmentation network here uses them);
  the stand-in is removed from ``sys.modules`` at once.
- **Layer names.** Converted modules are named after the ONNX nodes
  (``features/features/3/features/3/2/Relu``). A spec's ``cam_layers`` entry written for the
  torch model (``features.3``) is matched to the last converted module of that block, and the
  loaded spec names it.

Operators ``onnx2torch`` does not convert are named in one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from pathlib import Path
from typing import Any

from ..spec import ModelError, ModelSpec

__all__ = ["load_onnx", "onnx2torch_module"]

_INSTALL = "pip install 'napari-mlmi-interp[onnx]' && pip install --no-deps onnx2torch"


def _refused(name: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ModelError(
            f"the ONNX operator behind torchvision.ops.{name} needs torchvision, which is not installed"
        )

    return refuse


@contextlib.contextmanager
def _torchvision_stand_in() -> Any:
    """``torchvision`` and ``torchvision.ops`` as stand-ins while onnx2torch is imported."""
    stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    for name in ("nms", "box_convert", "roi_align"):
        setattr(ops, name, _refused(name))
    stub.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)


def onnx2torch_module() -> Any:
    """The ``onnx2torch`` package (with a torchvision stand-in where torchvision is absent)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelError(f"ONNX models need the onnx extra: {_INSTALL}") from None
    try:
        import onnx2torch

        return onnx2torch
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise ModelError(f"ONNX models need onnx2torch: {_INSTALL}") from None
    except Exception as exc:  # an installed but broken torchvision (a CUDA build without CUDA)
        raise ModelError(f"onnx2torch cannot be imported ({type(exc).__name__}: {str(exc)[:150]})") from None
    with _torchvision_stand_in():
        import onnx2torch
    return onnx2torch


def _unsupported(model: Any) -> list[str]:
    """The ONNX operators of ``model`` that onnx2torch has no converter for."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    have = {(k.domain, k.operation_type) for k in _CONVERTER_REGISTRY if opset is None or k.version <= opset}
    return sorted({n.op_type for n in model.graph.node if (n.domain or "", n.op_type) not in have})


def _cam_layers(net: Any, wanted: list[str]) -> list[str]:
    """The spec's ``cam_layers`` as the converted model names them (the last module of that block)."""
    names = [n for n, _ in net.named_modules() if n]
    out = []
    for layer in wanted:
        if layer in names:
            out.append(layer)
            continue
        # torch's exporter scopes a node by each enclosing module's path: features.3 -> features/features/3
        parts = layer.split(".")
        block = "/".join("/".join(parts[: i + 1]) for i in range(len(parts)))
        inside = [n for n in names if n.startswith(f"{block}/")]
        if inside:
            out.append(inside[-1])
    return out


def load_onnx(path: str | os.PathLike[str], spec: ModelSpec) -> Any:
    """The ONNX model at ``path`` as a torch module (eval mode); ``spec.cam_layers`` renamed to match.

    Raises
    ------
    ModelError
        The extra is missing, the file is not ONNX, or it uses operators onnx2torch cannot convert
        (named).
    """
    converter = onnx2torch_module()
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    missing = _unsupported(model)
    if missing:
        raise ModelError(f"{path}: onnx2torch cannot convert the ONNX operator(s) {', '.join(missing)}")
    try:
        net = converter.convert(model)
    except Exception as exc:
        raise ModelError(
            f"{path}: onnx2torch cannot convert it ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if spec.cam_layers:
        spec.cam_layers = _cam_layers(net, list(spec.cam_layers))
    return net.eval()
