"""The house rules of issue #14, checked on every run: room sizes and import contracts.

* no module in ``napari_mlmi_interp/`` is over 600 lines and no function (methods and
  nested functions included) over 80 lines, except the ones listed in ``EXCEPTIONS`` with
  the reason;
* every module of the package is covered by the import-linter layers contract (a new
  top-level module that is in no layer would escape every rule), and only the widgets are
  free of the no-napari / no-Qt contracts.

(That layer metadata keys are known to ``overlays/roles.py`` only is ``tests/test_roles.py``.)
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "napari_mlmi_interp"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: "path:function" -> why it may be longer (none today; add with a reason, never silently).
EXCEPTIONS: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_rule_checker_sees_a_long_function():
    """The checker itself: a 90-line function is found, an 80-line one is not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(88))
    long = ast.parse(f"def f():\n{body}\n    return 0\n")
    short = ast.parse("def g():\n" + "\n".join(f"    y{i} = {i}" for i in range(78)) + "\n    return 0\n")
    assert [n.end_lineno - n.lineno + 1 for n in _functions(long)] == [90]
    assert [n.end_lineno - n.lineno + 1 for n in _functions(short)] == [80]


def test_no_module_over_600_lines():
    long = {}
    for path in _modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        rel = path.relative_to(ROOT).as_posix()
        if n > MAX_MODULE_LINES and rel not in EXCEPTIONS:
            long[rel] = n
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            n = node.end_lineno - node.lineno + 1
            key = f"{rel}:{node.name}"
            if n > MAX_FUNCTION_LINES and key not in EXCEPTIONS:
                long[f"{key} (line {node.lineno})"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _contracts() -> list[dict]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def test_every_module_is_in_a_layer():
    layers = next(c for c in _contracts() if c["type"] == "layers")
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    top |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(top - named)
    assert not missing, f"modules in no import-linter layer: {missing}"
    assert not sorted(named - top), f"layers name modules that do not exist: {sorted(named - top)}"


def test_pure_and_adapter_contracts_name_every_module_of_their_layers():
    """Each module is either pure (no napari, no Qt), a napari adapter (no Qt) or a widget."""
    by_name = {c["name"]: c for c in _contracts()}
    pure_contract = by_name[next(n for n in by_name if n.startswith("Pure"))]
    pure = {m.rsplit(".", 1)[1] for m in pure_contract["source_modules"]}
    adapters = {m.rsplit(".", 1)[1] for m in by_name["napari adapters never import Qt"]["source_modules"]}
    layers = next(c for c in _contracts() if c["type"] == "layers")
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    free = named - pure - adapters
    unconstrained = sorted(free - {"_widgets"})
    assert free == {"_widgets"}, f"only the widgets may import Qt; unconstrained: {unconstrained}"
