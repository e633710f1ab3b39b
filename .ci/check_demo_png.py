"""Fail unless the demo's screenshot exists and shows something (not a blank or black window).

Usage: python .ci/check_demo_png.py DEMO_OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(out_dir: str) -> int:
    out = Path(out_dir)
    png = out / "demo.png"
    if not png.is_file():
        print(f"check_demo_png: {png} was not written", file=sys.stderr)
        return 1
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    colours = np.unique(rgb.reshape(-1, 3).astype(np.uint8), axis=0).shape[0]
    # a blank canvas (one colour, or a uniform grey/black window) has almost no spread
    # and a handful of colours; the demo shows a brain, a heat colormap and a sidebar
    bright = float((rgb.max(axis=2) > 40).mean())
    warm = float(((rgb[..., 0] > 150) & (rgb[..., 0] > rgb[..., 2] + 60)).mean())
    print(
        f"check_demo_png: {png} {rgb.shape[1]}x{rgb.shape[0]}, {colours} colours, "
        f"std {rgb.std():.1f}, {bright:.1%} non-dark, {warm:.2%} heat-coloured"
    )
    problems = []
    if rgb.shape[0] < 400 or rgb.shape[1] < 400:
        problems.append("smaller than 400 x 400 px")
    if colours < 256 or rgb.std() < 20:
        problems.append("blank (too few colours or no contrast)")
    if bright < 0.05:
        problems.append("almost all dark")
    if warm <= 0:
        problems.append("no heatmap colour")
    results = out / "demo_results.json"
    if not results.is_file():
        problems.append("demo_results.json missing")
    else:
        json.loads(results.read_text())
    if problems:
        print("check_demo_png: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
