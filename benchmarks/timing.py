"""Benchmark: the Methods step's time estimate against measured runs.

    python benchmarks/timing.py                     # writes docs/benchmarks_timing.md and .json
    python benchmarks/timing.py --quick --out /tmp/timing.md

For each demo model, one pass is measured (:func:`napari_mlmi_interp.explain.timing.measure_pass`,
as the sidebar does), each method's estimate is computed from it
(:func:`~napari_mlmi_interp.explain.timing.estimate`), then the method is run through
:func:`~napari_mlmi_interp.explain.explain` on the sample brain and
its attribution step (``timings["attribute"]``) and whole call (``timings["total"]``) are
timed (after a warm-up run when it is short). The ratio measured / estimate is what the
reader should expect of the minutes shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "benchmarks_timing.md"

#: (model, method, params, target kind): three methods of three families per model.
CASES = [
    ("lesion-classifier", "saliency", {}),
    ("lesion-classifier", "integrated_gradients", {"n_steps": 32}),
    ("lesion-classifier", "occlusion", {"window": 8, "stride": 4}),
    ("lesion-segmenter", "saliency", {}),
    ("lesion-segmenter", "integrated_gradients", {"n_steps": 32}),
    ("lesion-segmenter", "occlusion", {"window": 8, "stride": 4, "region": True}),
]
QUICK = [c for c in CASES if c[1] != "occlusion"] + [
    ("lesion-classifier", "occlusion", {"window": 16, "stride": 16}),
]


def _run(scan, mask, model, method: str, params: dict) -> tuple[float, float]:
    from napari_mlmi_interp.explain import explain

    params = dict(params)
    region = mask if params.pop("region", False) else None
    # a segmenter's question: class "lesion" inside the mask (the score's class given)
    kwargs = (
        {"target": "lesion"} if model.spec.task == "classification" else {"target": "lesion", "roi": mask}
    )
    result = explain(scan, model, method, params=params, region=region, **kwargs)
    return result.timings["attribute"], result.timings["total"]


def measure(cases: list) -> list[dict]:
    from napari_mlmi_interp.explain import get_method
    from napari_mlmi_interp.explain.timing import estimate, measure_pass, region_box_on_grid
    from napari_mlmi_interp.models import Preprocessor
    from napari_mlmi_interp.models.held import held_models
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    rows = []
    timings = {}
    for name, method, params in cases:
        model = held_models().resolve(name)
        pre = Preprocessor(model.spec.input, model.spec.normalization)
        grid = pre.grid_for(sample.scan.geometry)
        shape = tuple(grid.shape)
        if name not in timings:
            timings[name] = measure_pass(model.module, shape, channels=model.spec.input.channels)
        timing = timings[name]
        p = {k: v for k, v in params.items() if k != "region"}
        region = None
        if "region" in params:
            region = region_box_on_grid(sample.mask.array, sample.scan.geometry, grid)
        est = estimate(get_method(method), shape, timing, params=p, region=region)
        if est.seconds < 30:  # a warm-up run, where one-time set-up would weigh
            _run(sample.scan, sample.mask, model, method, params)
        attribute_s, total_s = _run(sample.scan, sample.mask, model, method, params)
        rows.append(
            {
                "model": name,
                "method": method + (" (region)" if region is not None else ""),
                "grid": "x".join(map(str, shape)),
                "forward_ms": 1e3 * timing.forward_s,
                "backward_ms": 1e3 * timing.backward_s,
                "batch": timing.batch,
                "batch_forward_ms": 1e3 * (timing.batch_forward_s or timing.forward_s),
                "batch_backward_ms": 1e3 * (timing.batch_backward_s or timing.backward_s),
                "forwards": est.forwards,
                "backwards": est.backwards,
                "estimate_s": est.seconds,
                "attribute_s": attribute_s,
                "total_s": total_s,
                "ratio_attribute": attribute_s / est.seconds,
                "ratio_total": total_s / est.seconds,
            }
        )
        print(rows[-1], flush=True)
    return rows


def write(rows: list[dict], out: Path) -> None:
    head = (
        "| model | method | grid | forward / backward ms (batch of 4, per sample) | passes (fwd + bwd) "
        "| estimate s "
        "| measured attribute s | measured total s | attribute / estimate | total / estimate |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| {r['model']} | {r['method']} | {r['grid']} | {r['forward_ms']:.0f} / {r['backward_ms']:.0f} "
        f"({r['batch_forward_ms']:.0f} / {r['batch_backward_ms']:.0f}) "
        f"| {r['forwards']:,} + {r['backwards']:,} | {r['estimate_s']:.2f} | {r['attribute_s']:.2f} "
        f"| {r['total_s']:.2f} | {r['ratio_attribute']:.2f} | {r['ratio_total']:.2f} |\n"
        for r in rows
    )
    ratios = [r["ratio_attribute"] for r in rows]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__} "
        f"(load average at the end: {load})"
    )
    out.write_text(
        "# Time estimates against measured runs\n\n"
        "Written by `python benchmarks/timing.py` on "
        f"{machine}. The estimate is (forward passes x one measured forward) + (backward passes x "
        "one measured backward), as the sidebar's Methods step and the Explain panel show it; the "
        "measured times are the method's attribution step and the whole `explain()` call on the "
        "sample brain (after a warm-up run for estimates under 30 s).\n\n"
        + head
        + body
        + f"\nattribute / estimate: {min(ratios):.2f} to {max(ratios):.2f} (median "
        f"{float(np.median(ratios)):.2f}).\n"
    )
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (coarse occlusion)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    write(measure(QUICK if args.quick else CASES), args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
