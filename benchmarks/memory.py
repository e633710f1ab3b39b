"""Per-sample memory of gradient methods: the budget's estimate against the measured peak.

Usage::

    flock /tmp/heavy.lock python benchmarks/memory.py [--sizes 64,96,128] [--models ...] [--json OUT]

For each model and input size, three fresh subprocesses (so nothing one leaves behind is
counted by the next), each with glibc's mmap threshold at 128 kB so that freed tensors go back
to the system and the resident set follows the tensors:

* ``ig``: one Integrated Gradients sample (Captum, ``internal_batch_size=1``, 2 steps: one
  forward and one backward alive at a time), the target as the plugin builds it (a class logit,
  or for a segmenter the sum of one class's logits in a central cube, :func:`roi_score`);
* ``saliency``: one Saliency call (one forward, one backward) on the same target;
* ``estimate``: :func:`napari_mlmi_interp.explain.budget.per_sample_bytes` and
  :func:`~napari_mlmi_interp.explain.budget.rough_sample_bytes` on the same scored module,
  and the peak the estimating itself took.

The peak is the resident-set high-water mark over the call (reset after the setup through
``/proc/self/clear_refs``) minus the resident set before it. Models: the brainchop tfjs models
(``../shared/data/brainchop``, or ``MLMI_SHARED_DATA``) and the demo zoo.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLMI_SHARED_DATA") or ROOT.parent / "shared" / "data")
BRAINCHOP = ("mindgrab", "model18cls", "model30chan18cls", "model30chan50cls", "model21_104class")
ZOO = ("lesion-classifier", "lesion-segmenter", "lesion-protonet")
MODES = ("ig", "saliency", "estimate")


#: ``--sizes crop``: the model input the zoo's spec gives on the real T1 (its brain crop)
CROP = -1
ZOO_NAMES = {
    "mindgrab": "brainchop-mindgrab",
    "model18cls": "brainchop-subcortical18",
    "model30chan50cls": "brainchop-aparc50",
}


def _real_t1_input(name: str) -> tuple[int, ...]:
    """The model input (x, y, z voxels) of the zoo model ``name`` on the real T1, from its card."""
    measured = json.loads((ROOT / "napari_mlmi_interp/models/zoo/brainchop-volumes.json").read_text())
    return tuple(int(n) for n in measured[ZOO_NAMES[name]]["model_input_shape"][1:])


def _size(text: str) -> int:
    return CROP if text == "crop" else int(text)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _scored(name: str, size: int) -> tuple[Any, Any, int | None]:
    """(module to attribute, input (1, 1, *shape), target index or None); size 0: the spec's size."""
    import numpy as np
    import torch

    from napari_mlmi_interp.explain.targets import roi_score

    torch.manual_seed(0)
    shape = (size,) * 3 if size > 0 else (0, 0, 0)
    if size == CROP:
        shape = _real_t1_input(name)
    if name in BRAINCHOP:
        from napari_mlmi_interp.models.tfjs import load_tfjs

        net, task = load_tfjs(SHARED / "brainchop" / "models" / name / "model.json"), "segmentation"
    else:
        from napari_mlmi_interp.models import builtin_models, load_model

        spec = next(s for s in builtin_models() if s.name == name)
        net, task = load_model(spec).module, spec.task
        shape = tuple(spec.input.size) if size == 0 and spec.input.size else shape
    net.eval()
    # one-time initialisation (oneDNN builds its kernels per shape, once per process: 20-50 MB)
    # is not a sample's memory; in the plugin, the prediction and the budget's probes did it
    warm = torch.rand(1, 1, *(shape if max(shape) <= 96 else (48, 48, 48)), requires_grad=True)
    torch.autograd.grad(net(warm).sum(), warm)
    del warm
    x = torch.rand(1, 1, *shape)
    if task == "classification":
        return net, x, 1
    mask = np.zeros(shape, bool)
    mask[tuple(slice(3 * n // 8, 5 * n // 8) for n in shape)] = True
    return roi_score(net, mask, 1, "sum"), x, None


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """One call in this fresh process: its peak above the resident set before it (MB)."""
    import torch
    from captum.attr import IntegratedGradients, Saliency  # imported before the baseline is read

    from napari_mlmi_interp.explain import budget

    torch.set_num_threads(2)
    module, x, target = _scored(spec["model"], spec["size"])
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS
        f.write("5")
    before = _status_mb("VmRSS")
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if spec["mode"] == "ig":
        IntegratedGradients(module).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=2, internal_batch_size=1
        )
    elif spec["mode"] == "saliency":
        Saliency(module).attribute(x, target=target)
    else:
        rough = budget.rough_sample_bytes(module, x)
        out["rough_mb"] = None if rough is None else round(rough / 1024**2, 1)
        limit = budget._available_bytes()
        out["estimate_mb"] = round(budget.per_sample_bytes(module, x, limit=limit) / 1024**2, 1)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_mb"] = round(_status_mb("VmHWM") - before, 1)
    return out


def run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    proc = subprocess.run(
        [sys.executable, __file__, "--probe", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--models", default=",".join(BRAINCHOP[:2] + ZOO))
    p.add_argument(
        "--sizes",
        default="64,96",
        help="voxels an axis; 0: the spec's input size; crop: the zoo model's input on the real T1",
    )
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    rows = []
    for model in args.models.split(","):
        for size in (_size(s) for s in args.sizes.split(",")):
            row: dict[str, Any] = {"model": model, "size": "crop" if size == CROP else size}
            if size == CROP:
                row["input"] = "x".join(str(n) for n in _real_t1_input(model))
            for mode in args.modes.split(","):
                row[mode] = run_probe({"model": model, "size": size, "mode": mode})
            est = row.get("estimate", {}).get("estimate_mb")
            for mode in ("ig", "saliency"):
                peak = row.get(mode, {}).get("peak_mb")
                if est and peak:
                    row[f"estimate/{mode}"] = round(est / peak, 3)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
