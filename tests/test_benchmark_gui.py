"""benchmarks/gui.py writes its own section of docs/benchmarks.md and leaves the rest alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gui_module():
    spec = importlib.util.spec_from_file_location("benchmarks_gui", ROOT / "benchmarks" / "gui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gui_section_is_appended_then_replaced_leaving_the_rest(tmp_path):
    gui = _gui_module()
    out = tmp_path / "benchmarks.md"
    run_py_part = "# Benchmarks\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    out.write_text(run_py_part)
    first = f"{gui.BEGIN}\n## GUI\n\nfirst figures\n{gui.END}\n"
    gui.write_section(out, first)
    assert out.read_text() == run_py_part + "\n" + first
    # a later section by another script, after ours, stays too
    out.write_text(out.read_text() + "\n## Later\n\nkept\n")
    second = f"{gui.BEGIN}\n## GUI\n\nsecond figures\n{gui.END}\n"
    gui.write_section(out, second)
    text = out.read_text()
    assert text.startswith(run_py_part) and "second figures" in text and "first figures" not in text
    assert text.count(gui.BEGIN) == 1 and text.endswith("## Later\n\nkept\n")
