"""Window/level presets (#16 item 4): the HU ranges, which windows a scan is offered, and the
scan layer's contrast limits after choosing one (in the adapter and from the dock widget)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.errors import InputError
from napari_mlmi_interp.io import Geometry, Volume
from napari_mlmi_interp.overlays import CT_WINDOWS, apply_window, window_choices, window_limits


def _ct(window=None) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.uniform(-1024, 3000, (12, 14, 16)).astype(np.float32)
    volume = Volume(array, Geometry(array.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), modality="CT")
    volume.window = window
    return volume


def test_ct_windows_are_level_plus_minus_half_the_width_in_hu():
    ct = _ct()
    assert window_limits(ct, "brain") == (0.0, 80.0)
    assert window_limits(ct, "subdural") == (-32.5, 182.5)
    assert window_limits(ct, "stroke") == (20.0, 60.0)
    assert window_limits(ct, "bone") == (-800.0, 2000.0)
    assert window_limits(ct, "lung") == (-1350.0, 150.0)
    assert window_limits(ct, "abdomen") == (-160.0, 240.0)
    assert window_limits(ct, "liver") == (-20.0, 140.0)
    assert set(CT_WINDOWS) == {"brain", "subdural", "stroke", "bone", "lung", "abdomen", "liver"}


def test_the_windows_offered_follow_the_modality_and_the_header():
    assert window_choices(_ct()) == ["auto", *CT_WINDOWS]
    assert window_choices(_ct(window=(50.0, 350.0)))[:2] == ["source", "auto"]
    assert window_limits(_ct(window=(50.0, 350.0)), "source") == (-125.0, 225.0)
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample().scan  # the sample carries its display window
    assert window_choices(sample) == ["source", "auto"]
    mr = sample.with_array(sample.array)  # the same MR without a header window
    assert window_choices(mr) == ["auto"]
    with pytest.raises(InputError, match="Hounsfield units; this scan is MR, not CT"):
        window_limits(mr, "brain")
    with pytest.raises(InputError, match="no window"):
        window_limits(mr, "source")
    with pytest.raises(InputError, match="unknown window 'soft'"):
        window_limits(_ct(), "soft")
    low, high = window_limits(mr, "auto")
    assert mr.array.min() <= low < high <= mr.array.max()


def test_applying_a_window_sets_the_layers_contrast_limits():
    from napari.components import ViewerModel

    from napari_mlmi_interp.overlays import add_layer, volume_layer_data

    ct = _ct(window=(40.0, 80.0))
    viewer = ViewerModel()
    layer = add_layer(viewer, volume_layer_data(ct))
    assert tuple(layer.contrast_limits) == (0.0, 80.0)  # the header's window is the default
    assert apply_window(layer, ct, "lung") == (-1350.0, 150.0)
    assert tuple(layer.contrast_limits) == (-1350.0, 150.0)
    assert layer.contrast_limits_range[0] <= -1350.0 and layer.contrast_limits_range[1] >= 150.0


def test_the_window_dock_sets_the_chosen_preset(make_napari_viewer):
    from napari_mlmi_interp._widgets import WindowWidget
    from napari_mlmi_interp.overlays import add_layer, volume_layer_data

    viewer = make_napari_viewer(show=True)
    layer = add_layer(viewer, volume_layer_data(_ct()))
    widget = WindowWidget(viewer)
    assert widget.scan.currentText() == layer.name
    assert [widget.window.itemText(i) for i in range(widget.window.count())] == ["auto", *CT_WINDOWS]
    widget.set_window("bone")
    assert tuple(layer.contrast_limits) == (-800.0, 2000.0) and widget.status.text() == "bone: -800 to 2000"
    widget.set_window("source")
    assert "no source window" in widget.status.text()
