"""Figures as people read them (#16 item 6): no exponents for everyday sizes, counts with
thousands separators, every summary of the values inside a region."""

from __future__ import annotations

from napari_mlmi_interp.framework.evidence.figures import Figure


def test_numbers_read_as_people_write_them():
    assert Figure("infidelity", 0.00606).text() == "0.00606"  # not 6.06e-03
    assert Figure("components_90", 1106.0).text() == "1,106"  # a count, not 1106.0
    assert Figure("region_volume_ml", 41.55).text() == "41.5 mL"
    assert Figure("peak_lps_mm", [23.4, 15.48, -14.52]).text() == "(23.4, 15.5, -14.5) mm"
    assert Figure("infidelity", 9.12e-05).text() == "9.1e-05"  # only the very small keep one


def test_intensity_inside_shows_every_summary():
    values = {
        "mean": 107.865,
        "sd": 20.67,
        "median": 110.0,
        "p5": 70.0,
        "p95": 132.0,
        "min": 12.0,
        "max": 159.0,
    }
    assert (
        Figure("intensity", values).text()
        == "mean 107.9, sd 20.7, median 110, p5 70, p95 132, min 12, max 159"
    )
