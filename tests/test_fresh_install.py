"""The Quick start on a fresh machine: the app install brings a Qt binding, the core does not."""

from __future__ import annotations

import configparser
import importlib.util

from napari_mlmi_interp import _display, cli
from napari_mlmi_interp.io import save
from napari_mlmi_interp.sample import make_sample
from tests.conftest import ROOT

BINDINGS = ("pyqt5", "pyqt6", "pyside2", "pyside6")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_install_requires_has_no_qt_binding_and_viewer_extra_brings_one():
    cfg = _setup_cfg()
    requires = cfg["options"]["install_requires"].lower()
    assert requires.strip(), "install_requires not found"
    assert not any(b in requires for b in BINDINGS)  # also catches napari[pyqt6] / napari[all]
    assert "napari[all]" not in requires
    extras = cfg["options.extras_require"]
    assert "napari[pyqt6]" in extras["viewer"]
    assert "napari[pyqt6]" in extras["test"]  # the test install is a superset of the app's


def test_demo_script_installs_the_viewer_extra():
    script = (ROOT / "scripts" / "demo.sh").read_text()
    assert '_env.sh" "viewer"' in script


def test_ci_runs_the_demo_in_a_fresh_venv_and_checks_the_screenshot():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    assert 'MLMI_VENV="$fresh/venv"' in ci and "bash scripts/demo.sh" in ci
    assert "check_demo_png.py" in ci


def test_without_a_qt_binding_the_error_names_the_pip_command(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec

    def no_binding(name, *args, **kwargs):
        return None if name in _display.QT_BINDINGS else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_binding)
    assert _display.missing_qt_binding() is not None
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert "pip install 'napari-mlmi-interp[viewer]'" in err
    assert "No Qt bindings could be found" not in err


def test_a_binding_is_found_here():
    # the test extra installs PyQt6: the check must not cry wolf
    assert _display.missing_qt_binding() is None


def test_view_also_checks_the_binding_first(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(_display, "missing_qt_binding", lambda: "no binding: pip install x")
    path = save(make_sample().scan, tmp_path / "scan.nii.gz")
    assert cli.main(["view", str(path)]) == 2
    assert "no binding: pip install x" in capsys.readouterr().err
