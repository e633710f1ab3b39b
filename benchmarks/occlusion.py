"""Exact incremental occlusion against Captum's full Occlusion and MONAI's OcclusionSensitivity.

    python benchmarks/occlusion.py [--out docs/benchmarks_occlusion.json] [--quick]

writes the JSON and, beside it, the Markdown page (docs/benchmarks_occlusion.md).

Side by side in one process, on the same network and input, one timed run each (2 threads):

- the plugin's ``occlusion(strategy="incremental")`` (:mod:`napari_mlmi_interp.explain.methods.incremental`),
  on a CPU on the channels-last copy ``explain()`` runs
  (:func:`napari_mlmi_interp.explain.tuning.channels_last`);
- Captum's full :class:`~captum.attr.Occlusion` (through the plugin's ``strategy="full"``, which
  is exactly Captum's call, over the same box);
- MONAI's :class:`~monai.visualize.OcclusionSensitivity` (mask = window, overlap = 1 - stride /
  window, mode 0, no activation) over the same box (given shrunk by half a mask, which MONAI
  adds back).

The demo network runs over its whole 64^3 volume. MONAI's ResNet18-3D and DenseNet121-3D at
96^3 (window 16, stride 8: 1331 windows, about 35 minutes each for Captum here) run over the
central 48^3 box (its 125 windows, the same for the plugin and Captum) and the full-volume time
is extrapolated from the time per window (marked so). The map difference is the plugin's
against Captum's over the box, relative to the range of Captum's map.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_mlmi_interp.explain.methods.occlusion import occlusion, occlusion_windows  # noqa: E402
from napari_mlmi_interp.explain.tuning import channels_last  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "benchmarks_occlusion.json"
CACHE = ROOT / "benchmarks" / ".cache"


def _input(size: int) -> torch.Tensor:
    """The sample brain, resampled to ``size``^3 and z-scored (a realistic input).

    Kept in ``benchmarks/.cache`` (ignored by git): a GPU machine without SimpleITK is given
    the same inputs that way.
    """
    path = CACHE / f"sample_brain_{size}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    from napari_mlmi_interp.sample import make_sample

    a = torch.from_numpy(np.asarray(make_sample().scan.array, np.float32))[None, None]
    a = torch.nn.functional.interpolate(a, size=(size,) * 3, mode="trilinear", align_corners=False)
    a = (a - a.mean()) / a.std()
    CACHE.mkdir(exist_ok=True)
    torch.save(a, path)
    return a


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        from monai.networks.nets import resnet18

        return resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
    if name == "densenet121":
        from monai.networks.nets import DenseNet121

        return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    from napari_mlmi_interp.models import resolve_model

    return resolve_model("lesion-classifier").module.eval()


def _timed(fn, device=None):
    sync = device is not None and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if sync:
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t


def run_config(name: str, size: int, w: int, s: int, box: int | None, batch: int, device=None) -> dict:
    device = device or torch.device("cpu")
    net, x = _net(name).to(device), _input(size).to(device)
    region = None
    if box is not None:  # the region whose outer box (grown by a window) is the central box
        lo, hi = (size - box) // 2 + w, (size + box) // 2 - w
        region = np.zeros((size,) * 3, bool)
        region[lo:hi, lo:hi, lo:hi] = True
    p = {"window": w, "stride": s, "baseline": 0.0, "perturbations_per_eval": batch}
    info: dict = {}
    # the plugin as explain() runs it: on a CPU, a channels-last copy of the model (its execution
    # tuning for perturbation methods); Captum and MONAI get the model as given
    tuned = channels_last(net) if device.type == "cpu" else None
    net_p, x_p = (
        (tuned, x.contiguous(memory_format=torch.channels_last_3d)) if tuned is not None else (net, x)
    )
    inc, t_inc = _timed(
        lambda: occlusion(net_p, x_p, 1, {**p, "strategy": "incremental"}, region, info=info), device
    )
    full, t_captum = _timed(lambda: occlusion(net, x, 1, {**p, "strategy": "full"}, region), device)
    inc, full = inc.cpu(), full.cpu()
    work = work_per_window(net, x, w)
    from monai.visualize import OcclusionSensitivity

    occ = OcclusionSensitivity(
        net, mask_size=w, n_batch=batch, verbose=False, mode=0.0, overlap=1 - s / w, activate=False
    )
    # MONAI grows a box by half a mask on each side: shrink it by as much, so that it occludes
    # the same region as the plugin and Captum
    b_box = None if box is None else [(size - box) // 2 + w // 2, (size + box) // 2 - 1 - w // 2] * 3
    _, t_monai = _timed(lambda: occ(x, b_box=b_box), device)
    span = float(full.max() - full.min())
    windows = occlusion_windows((box or size,) * 3, w, s)
    whole = occlusion_windows((size,) * 3, w, s)
    row = {
        "model": name,
        "size": size,
        "window": w,
        "stride": s,
        "batch": batch,
        "box": box,
        "windows": windows,
        "windows_full_volume": whole,
        "plugin_incremental_s": t_inc,
        "captum_full_s": t_captum,
        "monai_s": t_monai,
        "captum_over_plugin": t_captum / t_inc,
        "monai_over_plugin": t_monai / t_inc,
        "max_abs_diff_vs_captum": float((inc - full).abs().max()),
        "max_diff_rel_range": float((inc - full).abs().max()) / span if span > 0 else 0.0,
        "full_from": info.get("full_from", {}),
        **work,
        "strategy_run": info.get("strategy"),
    }
    if box is not None:  # the whole volume, from the time per window (marked "extrapolated")
        row["extrapolated_full_volume_s"] = {
            "plugin": t_inc * whole / windows,
            "captum": t_captum * whole / windows,
        }
    return row


def work_per_window(net: torch.nn.Module, x: torch.Tensor, w: int) -> dict:
    """Multiply-adds for one central window, incremental vs a full forward (torch's FLOP counter).

    Their ratio bounds the speed-up at equal efficiency: past the layer where a window's
    receptive field covers the whole tensor, the rest of the network runs in full.
    """
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from napari_mlmi_interp.explain.methods.incremental import IncrementalOcclusion

    inc = IncrementalOcclusion(net, x)
    start = np.array([[(n - w) // 2 for n in x.shape[2:]]])
    with FlopCounterMode(display=False) as part, torch.no_grad():
        inc.outputs(start, (w,) * 3, 0.0)
    with FlopCounterMode(display=False) as whole, torch.no_grad():
        net(x)
    return {
        "gmac_per_window_plugin": part.get_total_flops() / 2e9,
        "gmac_full_forward": whole.get_total_flops() / 2e9,
        "work_ratio": whole.get_total_flops() / max(1, part.get_total_flops()),
    }


def markdown(data: dict) -> str:
    """The table of ``data`` (what :func:`main` measured) as the page docs/benchmarks_occlusion.md."""
    lines = [
        "# Exact incremental occlusion: the benchmark",
        "",
        "Made by `python benchmarks/occlusion.py` (do not edit by hand): the plugin's incremental",
        "occlusion, Captum's full `Occlusion` and MONAI's `OcclusionSensitivity` side by side in one",
        f"process, one timed run each, on {data['machine'].get('device', 'the CPU')} "
        + (
            "(true fp32: TF32 off for all three) "
            if data["machine"].get("device", "the CPU") != "the CPU"
            else ""
        )
        + f"({data['machine']['cpu_threads']} CPU threads), torch "
        f"{data['machine']['torch']}. The plugin's map is compared with Captum's (max |difference| "
        "relative to the range of Captum's map). "
        + (
            "The plugin runs as `explain()` runs it on a CPU, on a channels-last copy of the model "
            "(its execution tuning); Captum and MONAI get the model as given. "
            if data["machine"].get("device", "the CPU") == "the CPU"
            else ""
        )
        + (
            "The 96³ rows run the central 48³ box (125 of the 1331 windows, the same windows for "
            "the plugin and Captum; MONAI is given the box shrunk by half a mask, which it adds "
            "back, so that it occludes the same region); their whole-volume times are extrapolated "
            "from the time per window."
            if any(r["box"] for r in data["rows"])
            else "Every row runs every window of the whole volume."
        ),
        "",
        "| model | volume | window, stride | windows run | plugin (s) | Captum (s) | MONAI (s) "
        "| Captum / plugin | MONAI / plugin | max diff / range | work ratio | whole volume, plugin vs "
        "Captum (extrapolated) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in data["rows"]:
        ext = r.get("extrapolated_full_volume_s")
        ext_text = f"{ext['plugin']:.0f} s vs {ext['captum']:.0f} s" if ext else "(whole volume run)"
        where = f"{r['size']}³" + (f", central {r['box']}³" if r["box"] else "")
        lines.append(
            f"| {r['model']} | {where} | {r['window']}, {r['stride']} | {r['windows']} | "
            f"{r['plugin_incremental_s']:.1f} | {r['captum_full_s']:.1f} | {r['monai_s']:.1f} | "
            f"{r['captum_over_plugin']:.1f}× | {r['monai_over_plugin']:.1f}× | "
            f"{r['max_diff_rel_range']:.1e} | {r.get('work_ratio', float('nan')):.1f}× | {ext_text} |"
        )
    lines += [
        "",
        "Work ratio: the multiply-adds of a full forward over those of one window's incremental "
        "pass (torch's FLOP counter): the speed-up at equal efficiency. Once a window's receptive "
        "field covers a layer's whole tensor, that layer and all after it run in full for every "
        "window, so the ratio is a property of the network and the window, not of the code: "
        "ResNet18's last two stages (12³ and 6³) alone cost 16 of its 22 GMAC per window (10.8 and 5.4).",
        "",
        "Where each network's windows stop being local (the first node run on full tensors, "
        "by type): "
        + "; ".join(f"{r['model']}: {', '.join(r['full_from']) or '–'}" for r in data["rows"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny volumes (a smoke test)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--whole", action="store_true", help="the 96³ rows over the whole volume")
    args = parser.parse_args()
    from napari_mlmi_interp.explain.device import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(2)
    if device.type == "cuda":  # true fp32 on the GPU, as the plugin runs it (no TF32), for all three
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    configs = (
        [("demo", 16, 4, 4, None, 4), ("resnet18", 32, 8, 8, 24, 4)]
        if args.quick
        else [("demo", 64, 8, 4, None, 8), ("resnet18", 96, 16, 8, 48, 8), ("densenet121", 96, 16, 8, 48, 8)]
    )
    rows = []
    for cfg in configs:
        row = run_config(*(cfg if not args.whole else (*cfg[:4], None, cfg[5])), device=device)
        rows.append(row)
        print(
            f"{row['model']} {row['size']}^3: plugin {row['plugin_incremental_s']:.1f} s, Captum "
            f"{row['captum_full_s']:.1f} s ({row['captum_over_plugin']:.1f}x), MONAI {row['monai_s']:.1f} s "
            f"({row['monai_over_plugin']:.1f}x), max diff {row['max_diff_rel_range']:.1e} of the range",
            flush=True,
        )
    out = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU",
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    write_pages(args.out, out, markdown)


def write_pages(out: Path, data: dict, page) -> None:
    """``data`` as JSON at ``out`` and ``page(data)`` as Markdown beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    out.with_suffix(".md").write_text(page(data))
    print(out, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
