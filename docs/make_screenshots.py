"""Make the README/docs screenshots under a (virtual) display.

    xvfb-run -a python docs/make_screenshots.py [--shared ../shared/data]

Writes docs/images/scanner_series.png (the real Siemens PD/T2 series from the shared
test data, split by echo by the plugin's reader) and docs/images/demo.png (the sample scan with
its lesion mask, as ``mlmi-interp demo`` shows it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = parser.parse_args()
    from napari_mlmi_interp._display import ensure_display

    ensure_display()
    import napari

    out = HERE / "images"
    out.mkdir(exist_ok=True)

    # the only real-image series in the shared data (the dicom2nifti series hold
    # anonymised noise): a Siemens sagittal oblique QA phantom, PD and T2 echoes
    series = args.shared / "dicom" / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 700)
    layers = viewer.open(str(series), plugin="napari-mlmi-interp")
    layers[1].colormap = "magma"
    viewer.grid.enabled = True
    # an axial cut across the sagittal stack shows the phantom's outline and the
    # slight obliquity of the acquisition, in LPS millimetres
    from napari_mlmi_interp.overlays import set_radiological_view
    from napari_mlmi_interp.overlays.roles import scan_of

    set_radiological_view(viewer, "axial")
    volume = scan_of(layers[0])
    viewer.dims.point = tuple(volume.geometry.to_lps([(s - 1) / 2 for s in volume.shape]))
    viewer.reset_view()
    viewer.screenshot(str(out / "scanner_series.png"), canvas_only=False, flash=False)
    viewer.close()
    print(out / "scanner_series.png")

    from napari_mlmi_interp.cli import main as cli

    # demo.png, demo_3d.png, demo_prototypes.png and demo_sidebar.png
    cli(["demo", "--out", str(HERE.parent / "mlmi-interp-demo"), "--screenshot", str(out / "demo.png")])


if __name__ == "__main__":
    main()
