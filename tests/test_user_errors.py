"""Bad arguments to the pure core are user errors (MlmiError) that old callers still catch as ValueError.

The command line says an :class:`MlmiError` as one line and anything else as an internal
error, so each of these must be one; each stays a ``ValueError`` for code that caught that.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_mlmi_interp.cli import main
from napari_mlmi_interp.cohort.manifest import read_cases
from napari_mlmi_interp.errors import InputError, MlmiError
from napari_mlmi_interp.framework.guide import Goal, elements_for
from napari_mlmi_interp.framework.settings import FigureSettings
from napari_mlmi_interp.io import Geometry, Volume, save
from napari_mlmi_interp.metrics.localization import pointing_game
from napari_mlmi_interp.metrics.recognizability import mass_region
from napari_mlmi_interp.metrics.regions import topk_mask

GRID = Geometry((4, 5, 6), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Geometry((4, 5, 6), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0)), "spacing must be"),
        (lambda: Volume(np.zeros((4, 5)), GRID), "array must be 3D"),
        (lambda: FigureSettings(topk_percent=0), "topk_percent must be in"),
        (lambda: FigureSettings(tolerance_mm=-1), "tolerance_mm must be >= 0"),
        (lambda: elements_for("patient", "trust"), "reader must be one of"),
        (lambda: Goal(task="regression"), "task must be one of"),
        (lambda: topk_mask(np.ones((4, 5, 6)), percent=0), "percent must be in"),
        (lambda: mass_region(np.ones((4, 5, 6)), fraction=2), "fraction must be in"),
        (
            lambda: pointing_game(np.ones((4, 5, 6)), np.zeros((4, 5, 6), bool), (2.0, 1.0, 1.0)),
            "ROI is empty",
        ),
    ],
)
def test_bad_argument_is_an_input_error_and_still_a_value_error(call, message):
    with pytest.raises(InputError, match=message) as info:
        call()
    assert isinstance(info.value, MlmiError) and isinstance(info.value, ValueError)


def test_bad_manifest_is_an_input_error(tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text("image\nscan.nii.gz\n")
    with pytest.raises(InputError, match="a manifest needs a 'scan' column"):
        read_cases(manifest)
    with pytest.raises(InputError, match="the masks folder does not exist"):
        read_cases(tmp_path, masks=tmp_path / "no-masks")


def test_a_setting_out_of_range_on_the_command_line_is_one_line(tmp_path, capsys):
    heat = np.zeros(GRID.shape, np.float32)
    heat[1, 2, 3] = 1.0
    roi = np.zeros(GRID.shape, np.uint8)
    roi[1, 2, 3] = 1
    map_path = save(Volume(heat, GRID), tmp_path / "map.nii.gz")
    roi_path = save(Volume(roi, GRID), tmp_path / "roi.nii.gz")
    assert main(["evaluate", str(map_path), "--roi", str(roi_path), "--percent", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "mlmi-interp: error: topk_percent must be in (0, 100], got 0.0\n"
