"""The viewer: ``view`` (a scan in napari) and ``demo`` (the whole workflow on the sample scan).

napari and the widget layer are imported inside the commands, after the display check, so the
rest of the command line never loads Qt.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..io import save
from ._common import CliError, _load


def _need_display(screenshot: str | None) -> str | None:
    """A Qt binding and a display (or Xvfb to start one), else a one-line error saying what to do."""
    from .._display import ensure_display, missing_qt_binding

    problem = missing_qt_binding()
    if problem:
        raise CliError(problem)
    display = ensure_display()
    if display is None:
        raise CliError(
            "no display: set $DISPLAY, or install Xvfb (apt-get install xvfb) so a virtual one can start"
        )
    return screenshot


def cmd_view(args: argparse.Namespace) -> int:
    volumes = _load(args.path)
    headless = not os.environ.get("DISPLAY")
    screenshot = args.screenshot or ("mlmi-interp-view.png" if headless else None)
    _need_display(screenshot)
    from .._viewer import show_volumes

    out = show_volumes([(v, {}) for v in volumes], plane=args.plane, screenshot=screenshot)
    if out:
        print(f"screenshot: {out}")
    return 0


def _short(files: dict[str, Any], summary: dict[str, Any], results: Path) -> dict[str, Any]:
    """What ``demo`` prints: the files, the lesion centre, per method the peak and its distance."""
    return {
        **files,
        "lesion_centre_lps_mm": summary["lesion_centre_lps_mm"],
        "explanations": [
            {
                "method": e["method"],
                "prediction": e["prediction"].get("predicted"),
                "peak_lps_mm": e["peak_lps_mm"],
                "peak_to_lesion_mm": e["peak_to_lesion_mm"],
            }
            for e in summary["explanations"]
        ],
        "screenshots": summary.get("screenshots", {}),
        "results": str(results),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    from ..sample import make_sample

    headless = not os.environ.get("DISPLAY")
    out_dir = Path(args.out)
    if args.real:
        return _real_demo(out_dir, args.screenshot or (str(out_dir / "demo_real.png") if headless else None))
    screenshot = args.screenshot or (str(out_dir / "demo.png") if headless else None)
    sample = make_sample()
    files = {
        "scan": str(save(sample.scan, out_dir / "sample_brain_t1.nii.gz")),
        "mask": str(save(sample.mask, out_dir / "sample_brain_lesion_mask.nii.gz")),
        "lesion_volume_ml": round(float(sample.mask.array.sum()) * sample.scan.geometry.voxel_volume_ml, 3),
    }
    _need_display(screenshot)
    from .._widgets.demo import run_demo

    summary = run_demo(out_dir, screenshot=screenshot)
    results = {**files, **summary}
    (out_dir / "demo_results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(_short(files, summary, out_dir / "demo_results.json"), indent=2))
    return 0


def _real_demo(out_dir: Path, screenshot: str | None) -> int:
    """``demo --real``: the real T1, the zoo's parcellation, one structure explained and judged."""
    _need_display(screenshot)
    from .._widgets.demo_real import run_real_demo
    from ..vocabulary import ELEMENTS

    summary = run_real_demo(out_dir, screenshot=screenshot)
    evidence = summary["framework"].get("evidence") or {}
    short = {
        "model": summary["model"],
        "structure": summary["structure"],
        "structure_volume_ml": summary["structure_volume_ml"],
        "peak_lps_mm": summary["explanation"].get("peak_lps_mm"),
        "peak_in_structure": summary["explanation"]["peak_in_structure"],
        "figures": {element: evidence.get(element, {}) for element in ELEMENTS},
        "seconds": summary["seconds"],
        "screenshots": summary.get("screenshots", {}),
        "results": str(out_dir / "demo_real_results.json"),
    }
    print(json.dumps(short, indent=2))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``view`` and ``demo`` on the subcommand parsers ``sub``."""
    p = sub.add_parser("view", help="open PATH in napari (headless: write a screenshot)")
    p.add_argument("path")
    p.add_argument("--plane", choices=["axial", "coronal", "sagittal"], default=None)
    p.add_argument("--screenshot", metavar="PNG", default=None)
    p.set_defaults(func=cmd_view)

    p = sub.add_parser(
        "demo",
        help="sample scan, demo classifier, Grad-CAM and IG overlays, prototype panel in napari "
        "(headless: screenshots + results)",
    )
    p.add_argument("--screenshot", metavar="PNG", default=None)
    p.add_argument("--out", metavar="DIR", default="mlmi-interp-demo")
    p.add_argument(
        "--real",
        action="store_true",
        help="instead: the real T1, the zoo's real parcellation (brainchop-aparc50), the left hippocampus "
        "explained and judged on the five elements",
    )
    p.set_defaults(func=cmd_demo)
