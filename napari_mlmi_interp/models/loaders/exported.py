"""``torch.export`` programs (``.pt2``, :func:`torch.export.load`) as models, without unpickling code.

TorchScript is deprecated in torch 2.13; ``torch.export.save`` writes a zip of a JSON graph
and raw tensors. Two things make a saved program a model this package can explain:

- **Safety.** :func:`torch.export.load` can fall back to unpickling (``torch.load`` with
  ``weights_only=False`` for "pickled" weights and constants, ``pickle.loads`` for opaque
  objects). The archive is checked first (a custom or opaque object is refused), and the
  load runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set, which makes every ``torch.load`` in it
  weights-only.
- **Layers and batches.** :func:`torch.export.unflatten` gives the program back its module
  hierarchy (``features.denseblock4``, ...), so layer methods (Grad-CAM) can hook a named
  layer; a program exported with a batch of 1 (a static batch dimension) is run one sample
  at a time (:class:`ExportedModule`), so Captum may batch its steps.

A program's input shape is fixed unless it was exported with dynamic dimensions; the spatial
shape it was exported with fills the spec's ``size`` (classification) or ``patch_size``
(segmentation) when the spec gives neither. The spec comes from a sidecar (as for a
state_dict) or from the archive's extra file ``napari_mlmi_interp/spec.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..spec import ModelError

__all__ = ["SPEC_EXTRA_FILE", "ExportedModule", "embedded_spec", "is_exported_program", "load_exported"]

#: Where a ``.pt2`` may carry its own spec (``torch.export.save(..., extra_files={...})``).
SPEC_EXTRA_FILE = "napari_mlmi_interp/spec.json"


def is_exported_program(path: str | os.PathLike[str]) -> bool:
    """A ``torch.export`` archive: a zip holding ``<name>/models/*.json`` and ``archive_format``."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("archive_format") for n in names) and any("/models/" in n for n in names)


#: What a symbolic shape expression (sympy ``srepr``, parsed by ``sympy.sympify``, i.e. ``eval``)
#: may hold: quoted symbol names, sympy classes (Capitalised), ``keyword=`` flags, numbers, operators.
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_SYMBOL = re.compile(r"^[A-Za-z]{1,4}\d*$")  # a quoted symbol name: s0, u12, ps3
_BARE_SYMBOL = re.compile(r"^[a-z]{1,3}\d+$")  # an unquoted one: never a builtin (eval, open)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _safe_expression(text: str) -> bool:
    """Whether ``text`` is a plain sympy expression (no call of a Python builtin, no attribute)."""
    if any(not _SYMBOL.match(a or b) for a, b in _QUOTED.findall(text)):
        return False
    bare = _QUOTED.sub("''", text)
    if re.search(r"__|\[|\]|;|\\|lambda|[A-Za-z_)]\s*\.", bare):
        return False
    for m in _WORD.finditer(bare):
        word, after = m.group(), bare[m.end() :].lstrip()[:1]
        if not (word[0].isupper() or after == "=" or _BARE_SYMBOL.match(word)):
            return False
    return True


def _expressions(node: Any) -> list[str]:
    """Every symbolic expression string in a serialized program (``expr_str``, range constraint keys)."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr_str" and isinstance(value, str):
                out.append(value)
            elif key == "range_constraints" and isinstance(value, dict):
                out.extend(str(k) for k in value)
            out.extend(_expressions(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_expressions(value))
    return out


def _check_archive(path: Path) -> None:
    """Refuse an archive that only unpickling (or ``eval``) could rebuild.

    Custom and opaque objects (``pickle.loads``, chosen by the constants config's
    ``path_name``), and symbolic shapes that are not plain sympy expressions (``sympify``).
    """
    try:
        from torch.export.pt2_archive.constants import CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX
    except ImportError:  # pragma: no cover - older torch
        raise ModelError(f"{path}: reading torch.export programs needs a newer torch") from None
    prefixes = (CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            texts = {n: zf.read(n) for n in names if n.endswith(".json")}
        configs = [json.loads(t) for n, t in texts.items() if "/data/" in n]
        models = [json.loads(t) for n, t in texts.items() if "/models/" in n]
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: a damaged torch.export archive ({type(exc).__name__})") from None
    objects = [n for n in names if "/constants/" in n and Path(n).name.startswith(prefixes)]
    for config in configs:
        entries = (config.get("config") or {}).values() if isinstance(config, dict) else []
        objects += [
            str(e.get("path_name")) for e in entries if str(e.get("path_name", "")).startswith(prefixes)
        ]
    if objects:
        raise ModelError(
            f"{path}: refused: the program holds {len(objects)} custom or opaque Python object(s) "
            f"({Path(objects[0]).name}) that only unpickling can rebuild, which can run code"
        )
    unsafe = [e for m in models for e in _expressions(m) if not _safe_expression(e)]
    if unsafe:
        raise ModelError(
            f"{path}: refused: a symbolic shape {unsafe[0][:60]!r} is not a plain expression "
            "(torch would evaluate it with Python)"
        )


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _weights_only() -> Any:
    """Every ``torch.load`` inside is weights-only (torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``).

    The variable is process-wide: loads are serialised, so one cannot unset it under another.
    """
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    with _ENV_LOCK:
        before = os.environ.get(key)
        os.environ[key] = "1"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


def embedded_spec(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The spec a ``.pt2`` carries as its extra file :data:`SPEC_EXTRA_FILE`, or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            found = [n for n in zf.namelist() if n.endswith(f"extra/{SPEC_EXTRA_FILE}")]
            if not found:
                return None
            data = json.loads(zf.read(found[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _input_shape(program: Any) -> tuple[Any, ...] | None:
    """The first input's shape as exported (ints where static, symbols where dynamic)."""
    for node in program.graph_module.graph.nodes if hasattr(program, "graph_module") else []:
        if node.op != "placeholder":
            continue
        spec = next(
            (s for s in program.graph_signature.input_specs if s.arg.name == node.name),
            None,
        )
        if spec is not None and str(spec.kind).endswith("USER_INPUT"):
            value = node.meta.get("val")
            return tuple(value.shape) if value is not None else None
    return None


def _static(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, int) else None


def _module_tree(program: Any) -> Any:
    try:
        return torch.export.unflatten(program)
    except Exception:  # a program unflatten cannot split: still runs, without named layers
        return program.module()


def load_exported(path: str | os.PathLike[str]) -> tuple[Any, tuple[Any, ...] | None]:
    """The module of a ``.pt2`` program (with its layers' names) and its input shape as exported.

    Raises
    ------
    ModelError
        Not a ``torch.export`` archive, an archive that needs unpickling, or one torch cannot load.
    """
    path = Path(path)
    if not is_exported_program(path):
        raise ModelError(
            f"{path}: not a torch.export program (save one with torch.export.save(program, path))"
        )
    _check_archive(path)
    try:
        with _weights_only():
            program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelError(
            f"{path}: torch.export cannot load it ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    shape = _input_shape(program)
    return ExportedModule(_module_tree(program), _static(shape[0]) if shape else None), shape


class ExportedModule(torch.nn.Module):
    """A loaded program as an ``nn.Module``: its layers under their own names; a static batch of
    ``batch`` samples is fed that many at a time.

    The program's top-level children are registered as this module's children (so
    ``named_modules()`` and a spec's ``cam_layers`` use the names of the module that was
    exported); the program itself is kept outside the module tree.
    """

    #: nonlinearities are aten functions in the graph, not modules Captum can override
    functional_nonlinearities = True

    def __init__(self, program: Any, batch: int | None) -> None:
        super().__init__()
        object.__setattr__(self, "program", program)
        self.batch = batch
        for name, child in program.named_children():
            if not name.startswith("_"):
                self.add_module(name, child)

    def forward(self, x: Any) -> Any:
        if self.batch is None or x.shape[0] == self.batch:
            return self.program(x)
        parts = [self.program(x[i : i + self.batch]) for i in range(0, x.shape[0], self.batch)]
        return torch.cat(parts)
