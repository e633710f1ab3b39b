"""Benchmarks: the plugin's explain() against bare Captum and MONAI, side by side in one process.

    python benchmarks/run.py            # full run (about 35 minutes on 2 cores), writes docs/benchmarks.md
    python benchmarks/run.py --quick --out /tmp/bench.md   # a smoke run on tiny volumes (tests)
    python benchmarks/run.py --keep-sections   # this table only; the sections below as they are

The page also holds, each in its own section, the tables of ``benchmarks/occlusion.py``
(exact incremental occlusion against Captum and MONAI on ResNet18-3D, DenseNet121-3D and the
demo network), ``benchmarks/gradients.py`` (the gradient methods against bare Captum) and,
where recorded, their GPU runs (``benchmarks/gpu.sh``); ``run.py`` runs the first two (CPU).

For each model (the demo lesion classifier, and MONAI's DenseNet121 in 3D) and volume size,
the same model input goes to:

- the plugin: :func:`napari_mlmi_interp.explain.explain` with a prepared model input (as the
  Explain panel does: preprocessing happens once per scan and model), target given,
  ``"auto"`` batch sizes under the memory budget, mapping back to the native grid included;
- the bare Captum call with the same parameters (IG at its best hand-tuned internal batch
  size, found by a sweep);
- MONAI's ``GradCAM`` and ``OcclusionSensitivity`` where MONAI has the method.

Times are the best of ``repeats`` runs after one warm-up. Peak memory is measured in a
fresh subprocess per call (peak resident set size over the call, from ``getrusage``),
since a process's allocator keeps memory it has freed. The floor is ``n x (forward +
backward)`` of one sample, measured (forward only for occlusion).

The DenseNet121 is randomly initialised with a fixed seed (no weights are downloaded):
speed and memory do not depend on the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
#: Address-space limit of the memory probes (GB): Captum's default IG call at 128³ would
#: need more than the machine has; under the limit it fails with an out-of-memory error.
LIMIT_GB = 12
#: The IG batch sweep skips batches whose activations would exceed this (GB).
SWEEP_MAX_GB = 8
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"

FULL = {
    "sizes": [64, 128],
    "models": ["demo", "densenet121"],
    "repeats": 3,
    "ig_steps": 32,
    "ig_sweep": [1, 4, 8, 16, 32],
    "smoothgrad_samples": 16,
    "occlusion": {"demo": (8, 4), "densenet121": (16, 8)},  # window, stride at 64^3 (x2 at 128^3)
    "occlusion_sizes": {"demo": [64], "densenet121": [64]},
    "ig_sizes": {"demo": [64, 128], "densenet121": [64]},
    "budget_mb": 1024.0,
    "tiny_budget_mb": 128.0,
    "timing_budget_mb": 4096.0,  # the timed rows: room for DenseNet121 at 128^3 (1.4 GB a sample)
}
QUICK = {
    "sizes": [16, 24],
    "models": ["demo"],
    "repeats": 1,
    "ig_steps": 4,
    "ig_sweep": [2, 4],
    "smoothgrad_samples": 2,
    "occlusion": {"demo": (4, 4), "densenet121": (8, 8)},
    "occlusion_sizes": {"demo": [16], "densenet121": []},
    "ig_sizes": {"demo": [16, 24], "densenet121": []},
    "budget_mb": 256.0,
    "tiny_budget_mb": 0.01,
    "timing_budget_mb": 256.0,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- setup --------------------------------------------------------------------------------------


def setup(model_name: str, size: int) -> dict[str, Any]:
    """Model, a synthetic subject on the model's grid, its prepared input, the CAM layer."""
    from napari_mlmi_interp.models import InputSpec, ModelSpec, Preprocessor, builtin_models, load_model
    from napari_mlmi_interp.synthetic import make_subject, template_grid

    spacing = 192.0 / size  # the same field of view at every size
    input_spec = {"spacing_mm": [spacing] * 3, "size": [size] * 3, "orientation": "RAS", "axes": "zyx"}
    if model_name == "demo":
        base = next(s for s in builtin_models() if s.name == "lesion-classifier")
        spec = dataclasses.replace(base, input=InputSpec(**input_spec))
        model = load_model(spec)
    else:
        from monai.networks.nets import DenseNet121

        torch.manual_seed(0)
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
        spec = ModelSpec.from_dict(
            {
                "name": "densenet121-3d",
                "task": "classification",
                "classes": ["no lesion", "lesion"],
                "input": input_spec,
                "normalization": {"kind": "zscore"},
                "cam_layers": ["class_layers.relu"],
            }
        )
        model = load_model(spec, module=net)
    model.module.eval()
    pre = Preprocessor(spec.input, spec.normalization)
    grid = pre.grid_for(template_grid())
    subject = make_subject(200_001, grid=grid, n_lesions=1)
    mi = pre.forward(subject.scan)
    layer = dict(model.module.named_modules())[spec.cam_layers[0]]
    return {
        "model": model,
        "net": model.module,
        "volume": subject.scan,
        "mi": mi,
        "x": mi.tensor(),
        "layer": layer,
        "layer_name": spec.cam_layers[0],
    }


# --- the calls being compared -------------------------------------------------------------------


def plugin(s: dict, method: str, params: dict, budget_mb: float):
    from napari_mlmi_interp.explain import explain

    return explain(
        s["volume"],
        s["model"],
        method,
        target=1,
        params=params,
        model_input=s["mi"],
        memory_budget_mb=budget_mb,
        device="cpu",  # Captum and MONAI run on the CPU here: so does the plugin
    )


def captum_gradcam(s: dict):
    import captum.attr as ca

    cam = ca.LayerGradCam(s["net"], s["layer"]).attribute(s["x"], target=1, relu_attributions=True)
    return ca.LayerAttribution.interpolate(cam, tuple(s["x"].shape[2:]), interpolate_mode="trilinear")


def monai_gradcam(s: dict):
    from monai.visualize import GradCAM

    return GradCAM(nn_module=s["net"], target_layers=s["layer_name"])(s["x"], class_idx=1)


def captum_ig(s: dict, steps: int, batch: int | None):
    import captum.attr as ca

    x = s["x"]
    return ca.IntegratedGradients(s["net"]).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=1,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=batch,
        return_convergence_delta=True,
    )


def captum_smoothgrad(s: dict, samples: int, batch: int):
    import captum.attr as ca

    x = s["x"]
    sigma = 0.15 * float(x.max() - x.min())
    torch.manual_seed(0)
    return ca.NoiseTunnel(ca.Saliency(s["net"])).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=batch, stdevs=sigma, target=1
    )


def captum_occlusion(s: dict, w: int, st: int, batch: int):
    import captum.attr as ca

    return ca.Occlusion(s["net"]).attribute(
        s["x"],
        sliding_window_shapes=(1, w, w, w),
        strides=(1, st, st, st),
        baselines=0.0,
        target=1,
        perturbations_per_eval=batch,
    )


def monai_occlusion(s: dict, w: int, st: int, batch: int):
    from monai.visualize import OcclusionSensitivity

    occ = OcclusionSensitivity(
        s["net"], mask_size=w, n_batch=batch, verbose=False, mode=0.0, overlap=1 - st / w, activate=False
    )
    with torch.no_grad():
        return occ(s["x"])


# --- measuring ----------------------------------------------------------------------------------


def best_time(fn, repeats: int, *, warm: bool = True) -> float:
    """Best of ``repeats`` timed calls, after one untimed warm-up call when ``warm``."""
    if warm:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def floor_per_sample(s: dict, repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) seconds for one sample."""
    x = s["x"]
    net = s["net"]

    def fwd():
        with torch.no_grad():
            net(x)

    def fwd_bwd():  # the gradient w.r.t. the input only, as attribution methods take it
        xi = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(net(xi)[0, 1], xi)

    return best_time(fwd, repeats), best_time(fwd_bwd, repeats)


def probe(spec: dict) -> dict:
    """Run one call in this (fresh) process; its peak memory over the call, in MB."""
    from napari_mlmi_interp.explain import MemoryBudgetError

    torch.set_num_threads(2)
    s = setup(spec["model"], spec["size"])
    # the high-water mark must start here: building the subject at 128^3 peaks higher than the
    # call itself, and ru_maxrss would report that (Linux >= 4.0: "5" resets VmHWM to VmRSS)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _rss_mb()
    try:
        if spec["what"] == "plugin_ig":
            result = plugin(s, "integrated_gradients", {"n_steps": spec["steps"]}, spec["budget_mb"])
            extra = {"internal_batch_size": result.params["internal_batch_size"]}
        elif spec["what"] == "captum_ig_default":
            captum_ig(s, spec["steps"], None)
            extra = {}
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(spec["what"])
    except MemoryBudgetError as exc:  # refused before running: not even one sample fits
        return {"peak_mb": round(_status_mb("VmHWM") - before, 1), "refused": str(exc)}
    except (RuntimeError, MemoryError) as exc:  # the address-space limit was hit
        return {"peak_mb": None, "error": f"out of memory under a {LIMIT_GB} GB limit: {str(exc)[:120]}"}
    return {"peak_mb": round(_status_mb("VmHWM") - before, 1), **extra}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {key} in /proc/self/status")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def run_probe(spec: dict) -> dict:
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    import os

    def limit() -> None:  # a call that would take the machine's memory fails instead
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_GB * 1024**3, LIMIT_GB * 1024**3))

    proc = subprocess.run(
        [sys.executable, __file__, "--probe", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        preexec_fn=limit,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"peak_mb": None, "error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the run ------------------------------------------------------------------------------------


def run(cfg: dict) -> dict:
    torch.set_num_threads(2)
    rows: list[dict] = []
    for model_name in cfg["models"]:
        for size in cfg["sizes"]:
            log(f"{model_name} at {size}^3")
            s = setup(model_name, size)
            reps = cfg["repeats"]
            fwd, fwd_bwd = floor_per_sample(s, reps)
            base = {"model": model_name, "size": size}

            # Grad-CAM: one forward and one backward
            t_plugin = best_time(partial(plugin, s, "gradcam", {}, cfg["timing_budget_mb"]), reps)
            t_captum = best_time(partial(captum_gradcam, s), reps)
            t_monai = best_time(partial(monai_gradcam, s), reps)
            rows.append(
                {
                    **base,
                    "method": "Grad-CAM",
                    "plugin_s": t_plugin,
                    "captum_s": t_captum,
                    "monai_s": t_monai,
                    "floor_s": fwd_bwd,
                }
            )
            log(f"  Grad-CAM: plugin {t_plugin:.3f} s, Captum {t_captum:.3f} s, MONAI {t_monai:.3f} s")

            # SmoothGrad: the plugin's auto batch; Captum at the same batch
            steps = cfg["smoothgrad_samples"]
            result = plugin(s, "smoothgrad", {"nt_samples": steps}, cfg["timing_budget_mb"])
            batch = int(result.params["nt_samples_batch_size"])
            t_plugin = best_time(
                partial(plugin, s, "smoothgrad", {"nt_samples": steps}, cfg["timing_budget_mb"]), 1
            )
            t_captum = best_time(partial(captum_smoothgrad, s, steps, batch), 1, warm=False)
            rows.append(
                {
                    **base,
                    "method": "SmoothGrad",
                    "plugin_s": t_plugin,
                    "captum_s": t_captum,
                    "floor_s": steps * fwd_bwd,
                    "note": f"{steps} samples, batch {batch} (auto) in both",
                }
            )
            log(f"  SmoothGrad: plugin {t_plugin:.3f} s, Captum {t_captum:.3f} s")

            # Integrated Gradients: the plugin's auto batch vs Captum's best hand-tuned one
            if size in cfg["ig_sizes"][model_name]:
                steps = cfg["ig_steps"]
                result = plugin(s, "integrated_gradients", {"n_steps": steps}, cfg["timing_budget_mb"])
                auto = int(result.params["internal_batch_size"])
                ig = {"n_steps": steps}
                t_plugin = best_time(
                    partial(plugin, s, "integrated_gradients", ig, cfg["timing_budget_mb"]), 1, warm=False
                )
                from napari_mlmi_interp.explain.budget import per_sample_bytes

                sample_gb = per_sample_bytes(s["net"], s["x"]) / 1024**3
                sweep = {}
                for b in cfg["ig_sweep"]:
                    if b > steps or (b > 1 and b * sample_gb > SWEEP_MAX_GB):
                        continue  # more than the machine can hold
                    sweep[b] = best_time(partial(captum_ig, s, steps, b), 1, warm=False)
                best_b = min(sweep, key=sweep.get)
                rows.append(
                    {
                        **base,
                        "method": "Integrated Gradients",
                        "plugin_s": t_plugin,
                        "captum_s": sweep[best_b],
                        "floor_s": (steps + 2) * fwd + steps * (fwd_bwd - fwd),
                        "note": f"{steps} steps; plugin batch {auto} (auto, {cfg['timing_budget_mb']:.0f} MB "
                        f"budget); Captum best batch {best_b} of "
                        + ", ".join(f"{b}: {t:.2f} s" for b, t in sweep.items()),
                    }
                )
                log(f"  IG: plugin {t_plugin:.3f} s (batch {auto}), Captum best {sweep[best_b]:.3f} s")

            # Occlusion at the same output resolution (a map per voxel)
            if size in cfg["occlusion_sizes"][model_name]:
                rows += occlusion_rows(s, cfg, base, size, fwd)
            del s

    return {"rows": rows, "memory": memory_probes(cfg)}


def occlusion_rows(s: dict, cfg: dict, base: dict, size: int, fwd: float) -> list[dict]:
    """Occlusion at the same output resolution (a map per voxel): the plugin's exact default
    (incremental) and its coarse-to-fine approximation, with the approximation's fidelity."""
    model_name = base["model"]
    w, st = cfg["occlusion"][model_name]
    w, st = w * size // cfg["sizes"][0], st * size // cfg["sizes"][0]
    exact = {"window": w, "stride": st}
    c2f = {**exact, "strategy": "coarse_to_fine"}
    budget = cfg["timing_budget_mb"]
    ours, t_plugin = timed_once(partial(plugin, s, "occlusion", exact, budget))
    batch = int(ours.params["perturbations_per_eval"])
    approx, t_c2f = timed_once(partial(plugin, s, "occlusion", c2f, budget))
    full, t_captum = timed_once(partial(captum_occlusion, s, w, st, batch))
    _, t_monai = timed_once(partial(monai_occlusion, s, w, st, batch))
    full_map = full.detach()[0].sum(0).numpy()
    span = float(full_map.max() - full_map.min()) or 1.0
    n_full = int(np.prod([(size - w) // st + 1] * 3)) + 1
    strategy = ours.provenance["method_run"]["occlusion"]["strategy"]
    fidelity = map_fidelity(approx.model_map, full_map)
    log(
        f"  Occlusion: plugin {strategy} {t_plugin:.2f} s, coarse-to-fine {t_c2f:.2f} s (Spearman "
        f"{fidelity['spearman']:.3f}, top-1% Dice {fidelity['dice_top']:.3f}), Captum {t_captum:.2f} s, "
        f"MONAI {t_monai:.2f} s"
    )
    common = {**base, "captum_s": t_captum, "monai_s": t_monai, "floor_s": n_full * fwd}
    return [
        {
            **common,
            "method": "Occlusion",
            "plugin_s": t_plugin,
            "max_diff_rel_range": float(np.abs(ours.model_map - full_map).max()) / span,
            "note": f"window {w}, stride {st}, batch {batch}; plugin {strategy} (exact, the default): "
            f"{n_full} forwards' worth; map vs Captum's: max diff "
            f"{float(np.abs(ours.model_map - full_map).max()) / span:.1e} of its range",
        },
        {
            **common,
            "method": "Occlusion, coarse-to-fine",
            "plugin_s": t_c2f,
            "fidelity": fidelity,
            "note": f"approximation: {int(approx.provenance['forward_samples'])} forwards of {n_full}; "
            f"vs the exact map: Spearman {fidelity['spearman']:.3f} over voxels, Dice of the top 1 % "
            f"{fidelity['dice_top']:.3f}",
        },
    ]


def map_fidelity(approx: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """How close an approximate map is to the exact one: Spearman's ρ over voxels, and the Dice of
    the two maps' top 1 % of voxels (by attribution)."""
    from napari_mlmi_interp.metrics import map_agreement

    return map_agreement(approx, exact, percent=1.0)


def timed_once(fn) -> tuple[Any, float]:
    """One timed call, its result kept."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def memory_probes(cfg: dict) -> list[dict]:
    """IG at the largest size: the plugin under the budget vs Captum's default call."""
    memory = []
    big = max(cfg["ig_sizes"]["demo"])
    # the plugin under the budget, Captum's default call, and the plugin under a budget below
    # one sample (refused before it runs)
    for what, budget in (
        ("plugin_ig", cfg["budget_mb"]),
        ("captum_ig_default", cfg["budget_mb"]),
        ("plugin_ig", cfg["tiny_budget_mb"]),
    ):
        spec = {"what": what, "model": "demo", "size": big, "steps": cfg["ig_steps"], "budget_mb": budget}
        log(f"memory probe: {what} at {big}^3, budget {budget:.0f} MB")
        memory.append({**spec, **run_probe(spec)})
    return memory


def targets(results: dict, cfg: dict) -> list[dict]:
    out = []
    for r in results["rows"]:
        name = f"{r['method']}, {r['model']} {r['size']}^3"
        if r["method"] in ("Grad-CAM", "Integrated Gradients"):
            ratio = r["plugin_s"] / r["captum_s"]
            out.append({"target": f"{name}: plugin / Captum <= 1.25", "value": ratio, "met": ratio <= 1.25})
        if r["method"] == "Occlusion":
            speedup = r["monai_s"] / r["plugin_s"]
            out.append({"target": f"{name}: MONAI / plugin >= 3", "value": speedup, "met": speedup >= 3})
    budget = cfg["budget_mb"]
    mem = {m["what"]: m for m in results["memory"] if m["budget_mb"] == budget}
    tiny = [m for m in results["memory"] if m["budget_mb"] != budget]
    plugin_peak = mem["plugin_ig"]["peak_mb"]
    captum_peak = mem["captum_ig_default"]["peak_mb"]
    out.append(
        {
            "target": f"IG {mem['plugin_ig']['size']}^3: plugin peak <= budget + 20% ({1.2 * budget:.0f} MB)",
            "value": plugin_peak,
            "met": plugin_peak is not None and plugin_peak <= 1.2 * budget,
        }
    )
    out.append(
        {
            "target": f"IG {mem['plugin_ig']['size']}^3: Captum's default call exceeds the budget",
            "value": captum_peak,
            "met": captum_peak is None or captum_peak > budget,
        }
    )
    for m in tiny:
        out.append(
            {
                "target": f"IG {m['size']}^3 under {m['budget_mb']:g} MB (below one sample): refused "
                "before running, with a message",
                "value": m.get("peak_mb"),
                "met": bool(m.get("refused")) and (m.get("peak_mb") or 0) <= 1.2 * m["budget_mb"] + 64,
            }
        )
    return out


def report(results: dict, cfg: dict, checks: list[dict]) -> str:
    def f(v):
        return "—" if v is None else f"{v:.3f}"

    lines = [
        "# Benchmarks",
        "",
        "Made by `python benchmarks/run.py` (do not edit by hand). The plugin's `explain()` "
        "against the bare Captum call and MONAI, side by side in one process, on the same model "
        "input; best of "
        f"{cfg['repeats']} after a warm-up for Grad-CAM, one timed run otherwise. The floor is "
        "n × (forward + backward) of one sample (forward only for occlusion), measured.",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}. Memory budget for the timed rows "
        f"{cfg['timing_budget_mb']:.0f} MB; for the memory probes {cfg['budget_mb']:.0f} MB (and "
        f"{cfg['tiny_budget_mb']:g} MB, below one sample).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for c in checks:
        value = "—" if c["value"] is None else f"{c['value']:.2f}"
        lines.append(f"| {c['target']} | {value} | {'yes' if c['met'] else '**no**'} |")
    lines += [
        "",
        "## Wall time (seconds)",
        "",
        "| model | size | method | plugin | Captum | plugin / Captum | MONAI | floor | plugin / floor "
        "| notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        note = r.get("note", "")
        lines.append(
            f"| {r['model']} | {r['size']}³ | {r['method']} | {f(r['plugin_s'])} | {f(r['captum_s'])} | "
            f"{r['plugin_s'] / r['captum_s']:.2f} | {f(r.get('monai_s'))} | {f(r['floor_s'])} | "
            f"{r['plugin_s'] / r['floor_s']:.2f} | {note} |"
        )
    lines += [
        "",
        "## Peak memory, Integrated Gradients",
        "",
        "Each call in a fresh process; the peak resident set over the call (high-water mark reset "
        "after the setup), above what the process held before it.",
        "",
        "| call | size | steps | peak (MB) | notes |",
        "|---|---|---|---|---|",
    ]
    for m in results["memory"]:
        call = (
            f"plugin, budget {m['budget_mb']:.0f} MB"
            if m["what"] == "plugin_ig"
            else "Captum, default (no internal batch size)"
        )
        note = (
            m.get("error")
            or m.get("refused")
            or (f"internal batch {m['internal_batch_size']} (auto)" if "internal_batch_size" in m else "")
        )
        lines.append(f"| {call} | {m['size']}³ | {m['steps']} | {f(m['peak_mb'])} | {note} |")
    lines += [
        "",
        'Occlusion: the plugin\'s default is exact (`strategy="auto"`: incremental on a CPU), '
        "its map compared with Captum's. The coarse-to-fine row is the approximation: windows "
        "and strides twice as large first, then full-resolution windows only around the 5% of "
        "voxels with the strongest coarse signal; its fidelity is Spearman's ρ over voxels and "
        "the Dice of the top 1 % against Captum's full map (the line every coarse-to-fine map "
        "carries). Captum's and MONAI's full runs evaluate every window. The plugin runs "
        'occlusion on a channels-last copy of the model (execution tuning, `explain(tuning="auto")`: '
        "forwards 1.25-1.3x faster on a CPU, outputs equal to float rounding); Captum and MONAI "
        "get the model as given.",
        "",
    ]
    return "\n".join(lines)


#: The benchmarks whose tables run.py runs and shows below its own: (script, output stem).
SECTIONS = (("occlusion.py", "benchmarks_occlusion"), ("gradients.py", "benchmarks_gradients"))


def sections(out: Path, quick: bool, rerun: bool) -> str:
    """The tables of :data:`SECTIONS` (run again when ``rerun``), and their GPU runs where recorded."""
    parts = []
    for script, stem in SECTIONS:
        target = out.parent / f"{stem}.json"
        if rerun:
            log(f"running benchmarks/{script}")
            cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--out", str(target)]
            subprocess.run(cmd + (["--quick"] if quick else []), check=True)
        for page, label in ((target.with_suffix(".md"), ""), (out.parent / f"{stem}_gpu.md", " (GPU)")):
            if page.exists():
                text = page.read_text().strip()
                title, _, body = text.partition("\n")
                parts.append(f"#{title}{label}\n{body}\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny volumes (a smoke test)")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="rerun only the memory probes, keeping the timed rows of the existing JSON report",
    )
    parser.add_argument(
        "--keep-sections",
        action="store_true",
        help="do not rerun benchmarks/occlusion.py and gradients.py: show their last tables",
    )
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    cfg = QUICK if args.quick else FULL
    started = time.time()
    if args.memory_only:
        previous = json.loads(args.out.with_suffix(".json").read_text())
        results = {"rows": previous["rows"], "memory": memory_probes(cfg)}
    else:
        results = run(cfg)
    checks = targets(results, cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = report(results, cfg, checks) + "\n" + sections(args.out, args.quick, not args.keep_sections)
    kept = args.out.read_text() if args.out.exists() else ""
    if "<!-- benchmarks/gui.py: begin" in kept:  # that section is benchmarks/gui.py's: keep it
        text = text.rstrip("\n") + "\n\n" + kept[kept.index("<!-- benchmarks/gui.py: begin") :]
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"config": cfg, **results, "targets": checks}, indent=2, default=str) + "\n"
    )
    log(f"wrote {args.out} in {time.time() - started:.0f} s")
    for c in checks:
        log(f"{'met' if c['met'] else 'NOT MET'}: {c['target']} ({c['value']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
