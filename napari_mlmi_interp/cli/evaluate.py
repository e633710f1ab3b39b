"""``evaluate``: score any attribution map (NIfTI, any tool) against an ROI on the map figures."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MlmiError
from ..io import binary_mask, load, save
from ._common import CliError, add_figure_settings


def _roi_file(path: str, threshold: float | None, tmp: str) -> str:
    """The ROI file to score against: ``path`` when it is a binary mask, else refused.

    With ``threshold``, the image > ``threshold`` is written as a mask in ``tmp`` instead.
    """
    volumes = load(path)
    if len(volumes) != 1:
        raise CliError(f"{path}: the ROI must be one volume, found {len(volumes)}")
    hint = "; give --roi-threshold T to use the image > T as the ROI"
    mask = binary_mask(volumes[0], threshold=threshold, what="ROI", path=path, hint=hint)
    if threshold is None:
        return path
    return str(save(volumes[0].with_array(mask.astype(np.uint8)), Path(tmp) / "roi.nii.gz"))


def _print_figures(result: Any, notes: list[str]) -> None:
    """The figures as text: notes first, then one block per element with its bands."""
    from ..framework import ELEMENT_INFO

    for note in notes:
        print(f"note: {note}")
    for element, figures in result.by_element().items():
        if not figures:
            continue
        print(ELEMENT_INFO[element].title)
        for f in figures:
            band = f"[{f.band}]" if f.band not in ("info",) else ""
            print(f"    {f.label:28s} {f.text():40s} {band}")
            if f.note and f.value is not None:
                print(f"    {'':28s} ({f.note})")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..framework import ELEMENT_INFO, load_bands
    from ..framework.files import evaluate_files, flat_figures

    if args.roi_threshold is not None and args.roi is None:
        raise CliError("--roi-threshold must come with --roi MASK")
    bands = load_bands(args.bands) if args.bands else None
    with tempfile.TemporaryDirectory(prefix="mlmi-roi-") as tmp:
        roi_path = _roi_file(args.roi, args.roi_threshold, tmp) if args.roi else None
        try:
            result, notes = evaluate_files(
                args.map,
                roi_path,
                scan_path=args.scan,
                labels_path=args.labels,
                percent=args.percent,
                tolerance_mm=args.tolerance_mm,
                bands=bands,
            )
        except MlmiError as exc:  # name the user's ROI file, not the thresholded copy
            raise CliError(str(exc).replace(str(roi_path), str(args.roi))) from None
    if args.json:
        nested = result.to_dict()
        out = {
            **flat_figures(result),
            "by_element": {e: nested[e] for e in ELEMENT_INFO},
            "bands": nested["bands"],
            "settings": nested["settings"],
            "notes": notes,
        }
        print(json.dumps(out, indent=2))
        return 0
    _print_figures(result, notes)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``evaluate`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "evaluate",
        help="score an attribution map (NIfTI, any tool) against an ROI on the five elements' map figures",
    )
    p.add_argument("map", metavar="MAP")
    p.add_argument(
        "--roi",
        default=None,
        metavar="MASK",
        help="the true region, a binary mask (any grid; resampled by position)",
    )
    p.add_argument(
        "--roi-threshold",
        type=float,
        default=None,
        metavar="T",
        help="use the --roi image > T as the region (for a mask that is not binary)",
    )
    p.add_argument(
        "--scan", default=None, help="the scan, for intensity statistics inside the attributed region"
    )
    p.add_argument("--labels", default=None, help="an anatomical label map: attribution mass per structure")
    add_figure_settings(p, "(as in the sidebar and batch)")
    p.add_argument(
        "--bands", default=None, metavar="JSON", help="pass/warn thresholds overriding the defaults"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_evaluate)
