"""Cohort throughput: the same batch on 1 and on 2 local Dask workers.

    python benchmarks/cohort.py [--cases 12] [--out docs/benchmarks_cohort.md]

Generates the cohort (synthetic subjects on the template's native 2 mm grid), then runs
``run_batch`` with Integrated Gradients (32 steps) and Grad-CAM on every case: with one
worker of one core, with two workers of one core each (the ratio is the target: >= 1.6),
and, for context, with one worker using both cores (torch's own threads). Wall time
includes starting the cluster and loading the model in every worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "docs" / "benchmarks_cohort.md"
METHODS = ["integrated_gradients", "gradcam"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from napari_mlmi_interp.cohort import run_batch
    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.synthetic import make_subject

    work = Path(tempfile.mkdtemp(prefix="mlmi-cohort-bench-"))
    scans = work / "scans"
    scans.mkdir()
    for i in range(args.cases):
        save(make_subject(300_000 + i).scan, scans / f"subject{i:02d}.nii.gz")
    runs = []
    for label, workers, threads in (
        ("1 worker x 1 core", 1, 1),
        ("2 workers x 1 core", 2, 1),
        ("1 worker x 2 cores", 1, 2),
    ):
        t0 = time.perf_counter()
        result = run_batch(
            scans,
            model="lesion-classifier",
            methods=METHODS,
            out=work / f"out-{workers}-{threads}",
            workers=workers,
            threads=threads,
            target="lesion",
        )
        seconds = time.perf_counter() - t0
        assert not result.failed, result.failed
        runs.append(
            {
                "run": label,
                "workers": workers,
                "threads": threads,
                "seconds": round(seconds, 2),
                "cases_per_min": round(60 * args.cases / seconds, 2),
            }
        )
        print(f"{label}: {seconds:.1f} s", flush=True)
    base, two = runs[0]["seconds"], runs[1]["seconds"]
    ratio = base / two
    lines = [
        "# Cohort throughput",
        "",
        "Made by `python benchmarks/cohort.py` (do not edit by hand). "
        f"{args.cases} generated cases (2 mm, {' + '.join(METHODS)} on the demo lesion classifier, "
        "NIfTI maps + metrics per case, summary CSV/Parquet); wall time including the cluster's "
        f"start and model loading. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        "| run | seconds | cases / min |",
        "|---|---|---|",
        *[f"| {r['run']} | {r['seconds']:.1f} | {r['cases_per_min']:.2f} |" for r in runs],
        "",
        f"**Target: 2 workers >= 1.6x one worker (one core each): {ratio:.2f}x — "
        f"{'met' if ratio >= 1.6 else 'not met'}.** One worker given both cores runs "
        f"{base / runs[2]['seconds']:.2f}x faster than on one (torch's threads scale less than workers).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(
        json.dumps({"cases": args.cases, "runs": runs, "ratio": ratio}, indent=2)
    )
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
