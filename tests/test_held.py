"""The process-wide registry of loaded models (pure: no napari, no Qt)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from napari_mlmi_interp.models.held import HeldModels, held_models


def _model(sha: str, name: str = "m"):
    return SimpleNamespace(sha256=sha, spec=SimpleNamespace(name=name))


def test_hold_get_contains_len_release():
    held = HeldModels()
    a, b = _model("a" * 64), _model("b" * 64)
    assert held.hold(a) == "a" * 64
    assert held.hold(b) == "b" * 64
    assert held.get("a" * 64) is a and held.get("b" * 64) is b
    assert "a" * 64 in held and "c" * 64 not in held and len(held) == 2
    assert held.get(None) is None and held.get("c" * 64) is None
    held.release("a" * 64)
    assert "a" * 64 not in held and len(held) == 1 and held.get("a" * 64) is None
    held.release("a" * 64)  # absent: no error
    assert len(held) == 1


def test_same_weights_keep_the_first_model():
    held = HeldModels()
    first, second = _model("d" * 64, "first"), _model("d" * 64, "second")
    held.hold(first)
    assert held.hold(second) == "d" * 64
    assert held.get("d" * 64) is first and len(held) == 1


def test_resolve_loads_a_registered_model_once(monkeypatch):
    import napari_mlmi_interp.models.registry as registry

    calls = []

    def fake_resolve(name):
        calls.append(name)
        return _model(f"{len(calls):064d}", name)

    monkeypatch.setattr(registry, "resolve_model", fake_resolve)
    held = HeldModels()
    first = held.resolve("lesion-classifier")
    assert held.resolve("lesion-classifier") is first and calls == ["lesion-classifier"]
    assert held.key_for("lesion-classifier") == first.sha256 and held.key_for("other") is None
    held.release(first.sha256)
    assert held.key_for("lesion-classifier") is None
    assert held.resolve("lesion-classifier") is not first and len(calls) == 2


def test_resolve_reads_a_file_again_once_it_was_rewritten(monkeypatch, tmp_path):
    """A model file retrained and saved in place is not served from the first read."""
    import os

    import napari_mlmi_interp.models.registry as registry

    calls = []

    def fake_resolve(name):
        calls.append(name)
        return _model(f"{len(calls):064d}", name)

    monkeypatch.setattr(registry, "resolve_model", fake_resolve)
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights v1")
    held = HeldModels()
    first = held.resolve(path)
    assert held.resolve(str(path)) is first and calls == [str(path)]  # unchanged: read once
    path.write_bytes(b"weights v2")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = held.resolve(path)
    assert second is not first and len(calls) == 2 and held.key_for(path) == second.sha256


def test_resolve_raises_the_loaders_error_for_an_unknown_name():
    from napari_mlmi_interp.models import ModelError

    with pytest.raises(ModelError):
        HeldModels().resolve("no-such-model-anywhere")


def test_holding_from_many_threads_keeps_every_model():
    held = HeldModels()
    models = [_model(f"{i:064d}") for i in range(64)]
    threads = [threading.Thread(target=held.hold, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 64 and all(held.get(m.sha256) is m for m in models)


def test_one_registry_per_process():
    assert held_models() is held_models()
    assert isinstance(held_models(), HeldModels)
