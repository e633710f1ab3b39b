"""Gradient methods: the plugin's run against bare fp32 Captum, side by side in one process.

    python benchmarks/gradients.py [--out docs/benchmarks_gradients.json] [--device auto] [--quick]

writes the JSON and, beside it, the Markdown page.

For MONAI's ResNet18-3D and DenseNet121-3D (1 input channel, 2 classes, seeded weights) at 96³
and 128³ and the sample brain resampled to that size: Saliency, Integrated Gradients (8 steps,
Gauss-Legendre) and SmoothGrad (4 noisy samples, σ = 0.15 of the range, seed 0), each

- **plugin**: what :func:`napari_mlmi_interp.explain.explain` runs, the method's own ``run``
  (seeding, Integrated Gradients' two completeness forwards included) with its batch sizes
  resolved under the memory budget and the execution tuning it picks on a CPU
  (:func:`napari_mlmi_interp.explain.tuning.gradient_copy`);
- **Captum**: the bare Captum call at its defaults (every step or sample in one batch), fp32,
  the model as given, seeded alike.

One warm-up of each, then the best of ``--repeats`` timed runs. The maps are compared as
max |plugin - Captum| / max |Captum|.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from occlusion import _input, _net, write_pages  # noqa: E402

from napari_mlmi_interp.explain._captum import seeded  # noqa: E402
from napari_mlmi_interp.explain.budget import resolve_batch_params  # noqa: E402
from napari_mlmi_interp.explain.methods import get_method  # noqa: E402
from napari_mlmi_interp.explain.tuning import gradient_copy  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "benchmarks_gradients.json"
TARGET = 1
PARAMS = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"nt_samples": 4},
}
#: The target ratio (Captum's time / the plugin's).
TARGET_RATIO = 1.5


def bare_captum(name: str, net: torch.nn.Module, x: torch.Tensor, p: dict) -> torch.Tensor:
    """The same attribution by Captum's bare call, at Captum's defaults."""
    import captum.attr as ca

    if name == "saliency":
        return ca.Saliency(net).attribute(x, target=TARGET, abs=True)
    if name == "integrated_gradients":
        return ca.IntegratedGradients(net).attribute(
            x, baselines=torch.zeros_like(x), target=TARGET, n_steps=p["n_steps"], method=p["method"]
        )
    sigma = float(p["stdevs"]) * float(x.max() - x.min())
    with seeded(int(p["seed"])):
        return ca.NoiseTunnel(ca.Saliency(net)).attribute(
            x, nt_type="smoothgrad", nt_samples=p["nt_samples"], stdevs=sigma, target=TARGET
        )


def plugin(name: str, net: torch.nn.Module, x: torch.Tensor, p: dict) -> tuple[torch.Tensor, dict]:
    """The method as the plugin's engine runs it (batch sizes resolved, tuning on a CPU)."""
    m = get_method(name)
    p, info = resolve_batch_params(m, p, net, x, None)
    tuned = gradient_copy(net) if x.device.type == "cpu" else None
    return m.run(tuned if tuned is not None else net, x, TARGET, p).map, {**p, **info}


def _best(fn, device: torch.device, repeats: int) -> tuple[object, float]:
    out, best = fn(), float("inf")  # warm-up (and the tuned copy made once)
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return out, best


def run_row(model: str, size: int, method: str, device: torch.device, repeats: int) -> dict:
    net, x = _net(model).to(device), _input(size).to(device)
    p = {**get_method(method).params, **PARAMS[method]}
    x = x.requires_grad_(False)
    (ours, used), t_plugin = _best(lambda: plugin(method, net, x, p), device, repeats)
    theirs, t_captum = _best(lambda: bare_captum(method, net, x, p).detach(), device, repeats)
    scale = float(theirs.abs().max())
    return {
        "model": model,
        "size": size,
        "method": method,
        "params": {
            k: v
            for k, v in used.items()
            if k
            in (
                "n_steps",
                "nt_samples",
                "internal_batch_size",
                "nt_samples_batch_size",
                "per_sample_mb",
                "activations_mb",
            )
        },
        "plugin_s": t_plugin,
        "captum_s": t_captum,
        "captum_over_plugin": t_captum / t_plugin,
        "max_rel_diff": float((ours.cpu() - theirs.cpu()).abs().max()) / scale if scale > 0 else 0.0,
        "tuning": "input_gradient_copy"
        if device.type == "cpu" and gradient_copy(net) is not None
        else "none",
    }


def markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        "# Gradient methods: the plugin against bare Captum",
        "",
        "Made by `python benchmarks/gradients.py` (do not edit by hand): best of "
        f"{out['repeats']} timed runs after a warm-up, {m['device']}"
        + (" (true fp32: TF32 off for both)" if "CPU" not in m["device"] else "")
        + f", {m['threads']} CPU threads, "
        f"torch {m['torch']}. Captum: the bare call at its defaults, fp32, the model as given. "
        "Plugin: the method's run as `explain()` makes it (Integrated Gradients' two completeness "
        "forwards included), with its execution tuning; its batch is what the memory budget "
        "chose (samples a batch; Captum's call runs every step or sample in one). Difference: "
        f"max |plugin − Captum| / max |Captum|. Target: Captum / plugin ≥ {TARGET_RATIO}×.",
        "",
        "| model | volume | method | plugin batch | plugin (s) | Captum (s) | Captum / plugin "
        "| max rel. diff | tuning |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in out["rows"]:
        p = r["params"]
        batch = p.get("internal_batch_size", p.get("nt_samples_batch_size", 1))
        lines.append(
            f"| {r['model']} | {r['size']}³ | {r['method']} | {batch} | {r['plugin_s']:.2f} "
            f"| {r['captum_s']:.2f} | {r['captum_over_plugin']:.2f}× | {r['max_rel_diff']:.1e} "
            f"| {r['tuning']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from napari_mlmi_interp.explain.device import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--quick", action="store_true", help="32³ only (a smoke test)")
    parser.add_argument("--models", nargs="+", default=["resnet18", "densenet121"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    else:  # true fp32 on the GPU, as the plugin runs it (no TF32), for Captum too
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    sizes = [32] if args.quick else args.sizes
    rows = []
    for model in args.models:
        for size in sizes:
            for method in PARAMS:
                row = run_row(model, size, method, device, args.repeats)
                rows.append(row)
                print(
                    f"{model} {size}^3 {method}: plugin {row['plugin_s']:.2f} s, "
                    f"Captum {row['captum_s']:.2f} s ({row['captum_over_plugin']:.2f}x), "
                    f"max rel diff {row['max_rel_diff']:.1e}, {row['params']}",
                    flush=True,
                )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine() + " CPU"
    out = {
        "machine": {
            "device": name,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "repeats": args.repeats,
        "target_ratio": TARGET_RATIO,
        "rows": rows,
    }
    write_pages(args.out, out, markdown)


if __name__ == "__main__":
    main()
