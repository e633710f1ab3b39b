"""The prototype panel's class box and thumbnails, in a shown napari viewer (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _icon_pixels(item, size) -> np.ndarray:
    """The RGB pixels of a list item's icon, drawn at ``size``."""
    from qtpy.QtGui import QImage

    image = item.icon().pixmap(size).toImage().convertToFormat(QImage.Format_RGB888)
    w, h = image.width(), image.height()
    data = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    return data.reshape(h, image.bytesPerLine())[:, : 3 * w].reshape(h, w, 3)


def _wait_report(qtbot, widget, target: str) -> None:
    qtbot.waitUntil(
        lambda: widget.report is not None and widget.report.target_name == target and not widget.busy,
        timeout=120_000,
    )


def test_class_box_defaults_to_the_prediction_and_switches_the_rows(viewer_with_sample, qtbot):
    from napari_mlmi_interp._widgets import PrototypeWidget

    viewer, _scan, _mask = viewer_with_sample
    widget = PrototypeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Prototypes")
    assert widget.model.currentText() == "lesion-protonet"
    box = widget.target
    assert [box.itemData(i) for i in range(box.count())] == ["no lesion", "lesion"]

    widget.run()
    _wait_report(qtbot, widget, "lesion")  # the demo network calls the sample brain a lesion
    report = widget.report
    assert report.prediction.label == "lesion"
    assert box.currentData() == "lesion" and box.currentText() == "lesion (predicted)"
    assert [box.itemData(i) for i in range(box.count())] == ["no lesion", "lesion"]
    rows = [widget.list.item(i).text() for i in range(widget.list.count())]
    assert len(rows) == 5 and all("(lesion)" in r for r in rows)

    box.setCurrentIndex(box.findData("no lesion"))  # the user picks the other class
    _wait_report(qtbot, widget, "no lesion")
    assert box.currentData() == "no lesion"
    other = [widget.list.item(i).text() for i in range(widget.list.count())]
    assert len(other) == 5 and all("(no lesion)" in r for r in other)
    assert {m.index for m in widget.report.matches}.isdisjoint({m.index for m in report.matches})
    assert "'no lesion'" in widget.status.text()

    # thumbnails: 96-pixel slices, each the pure thumbnail with its region outlined
    size = widget.list.iconSize()
    assert size.height() >= 96 and size.width() >= 3 * 96
    for row, match in enumerate(widget.report.matches):
        pixels = _icon_pixels(widget.list.item(row), size)
        np.testing.assert_array_equal(pixels, match.thumbnail())
        assert match.regions is not None and match.regions.any()

    # another run goes back to the predicted class
    widget.run()
    _wait_report(qtbot, widget, "lesion")
    assert box.currentData() == "lesion"


def test_cancel_drops_a_running_report(viewer_with_sample, qtbot):
    """Cancel while the report is computed: no rows, no report, no layer; the panel is free again."""
    from napari_mlmi_interp._widgets import PrototypeWidget

    viewer, _scan, _mask = viewer_with_sample
    widget = PrototypeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Prototypes")
    n_layers = len(viewer.layers)
    assert not widget.cancel_button.isEnabled()
    widget.run()
    assert widget.busy and widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.status.text() == "Cancelled."
    assert widget.report is None and widget.list.count() == 0 and len(viewer.layers) == n_layers
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    widget.run()  # and it runs again to the end
    _wait_report(qtbot, widget, "lesion")
    assert widget.list.count() == 5
