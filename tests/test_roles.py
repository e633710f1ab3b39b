"""Layer roles and facts: ``overlays/roles.py`` is the one module that knows the metadata keys."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.overlays import roles
from napari_mlmi_interp.overlays.roles import Role

PACKAGE = Path(__file__).resolve().parents[1] / "napari_mlmi_interp"

#: Files (paths under the package, or folder prefixes) allowed to read layer metadata by
#: string key while they move onto the accessors. Empty: the sidebar moved (issue #14).
STILL_READING_KEYS: tuple[str, ...] = ()

_PATTERNS = (
    r"\.metadata\[\s*[\"']",  # layer.metadata["kind"]
    r"\.metadata\.get\(\s*[\"']",  # layer.metadata.get("kind")
    r"\[[\"']metadata[\"']\]\s*\[",  # attrs["metadata"]["kind"]
    r"\[[\"']metadata[\"']\]\s*\.(get|update)\(",  # attrs["metadata"].get(...)
)


def _volume(shape=(6, 7, 8), name="scan", case_id="case-1") -> Volume:
    g = Geometry(shape, (2.0, 1.0, 1.5), (-5.0, 3.0, 1.0), np.eye(3))
    rng = np.random.default_rng(0)
    return Volume(rng.normal(size=shape).astype(np.float32), g, name=name, case_id=case_id)


def _explanation(scan: Volume, method: str = "gradcam"):
    amap = np.zeros(scan.shape, np.float32)
    amap[3, 4, 5] = 2.0
    amap[2, 2, 2] = 1.0
    native = scan.with_array(amap, name="map")
    return SimpleNamespace(
        native=native,
        signed=False,
        method=method,
        target={"name": "lesion"},
        peak_lps=lambda: native.geometry.to_lps(np.array([3, 4, 5])),
    )


def _layer(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)


def test_layer_metadata_spells_the_keys_and_refuses_unknown_fields():
    meta = roles.layer_metadata(Role.CONTOUR, group="g", percent=2.5, study_item="item-3")
    assert roles.role_of(meta) is Role.CONTOUR
    assert (roles.group_of(meta), roles.percent_of(meta, 9.0), roles.study_item_of(meta)) == (
        "g",
        2.5,
        "item-3",
    )
    assert roles.percent_of({}, 9.0) == 9.0 and roles.group_of({}) is None
    with pytest.raises(TypeError, match="unknown layer metadata fields"):
        roles.layer_metadata(colour="red")


@pytest.mark.parametrize("role", list(Role))
def test_role_values_round_trip(role):
    meta: dict = {}
    roles.set_role(meta, role)
    assert roles.role_of(meta) is role
    assert Role(role.value) is role and isinstance(role, str)


def test_a_layer_from_a_volume_is_a_scan_and_shows_that_volume():
    from napari_mlmi_interp.overlays import volume_layer_data

    scan = _volume()
    data = volume_layer_data(scan)
    layer = _layer(data)
    assert roles.role_of(data) is roles.role_of(layer) is Role.SCAN
    assert roles.scan_of(layer) is scan and roles.source_volume_of(layer) is scan
    assert roles.axes_of(layer) == scan.geometry.nearest_lps_permutation()
    assert roles.role_of({}) is None and roles.scan_of({}) is None
    assert roles.role_of({"kind": "someone else's"}) is None  # not one of ours


def test_explanation_layers_carry_the_model_key_and_find_their_scan():
    from napari.layers import Layer

    from napari_mlmi_interp.models.held import held_models
    from napari_mlmi_interp.overlays import explanation_layer_data, volume_layer_data

    scan = _volume()
    other = _volume(shape=(5, 7, 8), name="other", case_id="case-2")
    explanation = _explanation(scan)
    model = SimpleNamespace(sha256="f" * 64, spec=SimpleNamespace(name="fake"))
    data = explanation_layer_data(explanation, scan_name="scan", method_title="Grad-CAM", model=model)
    try:
        heat = data["heatmap"]
        assert roles.role_of(heat) is Role.HEATMAP and roles.role_of(data["contour"]) is Role.CONTOUR
        assert roles.explanation_of(heat) is explanation
        assert roles.model_key_of(heat) == "f" * 64 and held_models().get("f" * 64) is model
        assert roles.scan_name_of(heat) == "scan"
        assert roles.group_of(heat) == roles.group_of(data["contour"]) == "scan · Grad-CAM · lesion"
        assert "model" not in roles.metadata_of(heat) and "scan" not in roles.metadata_of(heat)

        viewer = SimpleNamespace(layers=[Layer.create(*volume_layer_data(other))])
        heat_layer = _layer(heat)
        assert roles.scan_layer_for(viewer, heat_layer) is None  # its scan is not there
        assert roles.scan_for(viewer, heat_layer) is None
        scan_layer = _layer(volume_layer_data(scan))
        viewer.layers += [scan_layer, heat_layer, _layer(data["contour"])]
        assert roles.scan_layer_for(viewer, heat_layer) is scan_layer
        shown = roles.scan_for(viewer, heat_layer)
        np.testing.assert_array_equal(shown.array, scan.array)  # in the source (z, y, x) order
        assert shown.geometry.same_grid(scan.geometry) and shown.case_id == scan.case_id
        scan_layer.name = "renamed"  # found by its grid and case when the name changed
        assert roles.scan_layer_for(viewer, heat_layer) is scan_layer
        assert roles.layers_of(viewer, Role.HEATMAP) == [heat_layer]
        assert roles.layers_of(viewer, Role.CONTOUR, group="elsewhere") == []
        assert len(roles.layers_of(viewer, Role.CONTOUR, group="scan · Grad-CAM · lesion")) == 1
        assert roles.scan_layers(viewer) == [viewer.layers[0], scan_layer]  # not the heatmap
    finally:
        held_models().release("f" * 64)


def test_layer_data_and_layers_share_setters():
    from napari_mlmi_interp.overlays import heatmap_layer_data

    scan = _volume()
    data = heatmap_layer_data(scan, signed=True)
    roles.set_blinded_label(data, "Method A")
    roles.set_study_item(data, "item-1")
    layer = _layer(data)
    assert roles.blinded_label_of(layer) == "Method A" and roles.study_item_of(layer) == "item-1"
    assert roles.scale_of(layer) == roles.own_scale_of(layer) > 0
    own = roles.scale_of(layer)
    roles.set_scale(layer, 2 * own, own=own)
    assert roles.scale_of(layer) == 2 * own and roles.own_scale_of(layer) == own
    roles.set_percent(layer, 3)
    assert roles.percent_of(layer, 9.0) == 3.0
    state = layer.as_layer_data_tuple()[1]
    assert roles.role_of(roles.state_metadata(state)) is Role.HEATMAP


def _reads_key(line: str) -> bool:
    """Whether a source line reads or writes layer metadata by key (a Volume's own facts aside)."""
    return "volume.metadata" not in line and any(re.search(p, line) for p in _PATTERNS)


def _reads_keys(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(PACKAGE).as_posix()
    return [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if _reads_key(line)]


def test_only_roles_reads_layer_metadata_by_key():
    """Panels, overlays, reader and writer use the ``roles`` accessors (allow-list above)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "overlays/roles.py" or not rel.startswith(("_widgets", "overlays", "_")):
            continue
        if rel.startswith(STILL_READING_KEYS):
            continue
        offenders += _reads_keys(path)
    assert not offenders, "layer metadata read by key outside overlays/roles.py:\n" + "\n".join(offenders)


def test_the_key_check_sees_a_key_read(tmp_path):
    """The check itself: each spelling is caught, a Volume's own metadata is not."""
    lines = [
        'kind = layer.metadata["kind"]',
        "kind = layer.metadata.get('kind')",
        'attrs["metadata"]["kind"] = "x"',
        'attrs["metadata"].update(kind="x")',
        'name = volume.metadata.get("SeriesDescription")',
    ]
    fake = tmp_path / "probe.py"  # written as a file: the check reads files
    fake.write_text("\n".join(lines))
    assert [line for line in fake.read_text().splitlines() if _reads_key(line)] == lines[:4]
