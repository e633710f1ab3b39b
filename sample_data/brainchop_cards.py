"""Measure the shipped brainchop models on the shipped real T1 and write their model cards.

    python sample_data/brainchop_cards.py            # all three, one subprocess each (peak memory)
    python sample_data/brainchop_cards.py --one NAME # one model, prints its figures as JSON

Each model runs exactly as ``mlmi-interp predict`` runs it (its spec's preprocessing, the
model, the inverse mapping onto the scan's grid); per-label volumes are voxel counts on the
scan's own grid times its voxel volume. Left/right: the label's voxels on either side of the
brain's midline (the LPS x of the centroid of everything the model does not call
background; LPS +x is the patient's left). Writes ``models/zoo/<name>.md`` and the figures to
``models/zoo/brainchop-volumes.json`` (read by ``tests/test_brainchop.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "napari_mlmi_interp" / "models" / "zoo"
NAMES = ("brainchop-mindgrab", "brainchop-subcortical18", "brainchop-aparc50")
UPSTREAM = {
    "brainchop-mindgrab": ("mindgrab", 16, "omnimodal Skull Strip (High Mem, Fast)"),
    "brainchop-subcortical18": ("model18cls", 6, "Subcortical + GWM (Low Mem, Faster)"),
    "brainchop-aparc50": ("model30chan50cls", 8, "Aparc+Aseg 50 (High Mem, Fast)"),
}


def measure(name: str) -> dict:
    import torch

    from napari_mlmi_interp.models import predict, preprocessor_for, resolve_model
    from napari_mlmi_interp.sample import load_real_t1

    torch.set_num_threads(2)
    scan = load_real_t1()
    model = resolve_model(name)
    t0 = time.perf_counter()
    mi = preprocessor_for(model).forward(scan)
    t1 = time.perf_counter()
    pred = predict(scan, model, model_input=mi)
    t2 = time.perf_counter()
    labels = pred.segmentation.array
    g = scan.geometry
    zz, yy, xx = np.nonzero(labels > 0)
    lps_x = g.to_lps(np.stack([zz, yy, xx], 1).astype(float))[:, 0]  # through the full affine
    mid_x = float(lps_x.mean())
    values = labels[zz, yy, xx]
    ml = g.voxel_volume_ml
    sides = {}
    for k, c in enumerate(model.spec.classes):
        if k == 0:
            continue
        on = values == k
        sides[c] = [  # [left, right]: LPS +x is the patient's left
            round(float((lps_x[on] > mid_x).sum()) * ml, 3),
            round(float((lps_x[on] < mid_x).sum()) * ml, 3),
        ]
    _figure(name, scan.array, labels, model.spec)
    return {
        "name": name,
        "volumes_ml": {c: round(v, 3) for c, v in pred.volumes_ml.items()},
        "left_right_ml": sides,
        "midline_lps_x_mm": round(mid_x, 2),
        "crop_box_zyx": [list(b) for b in mi.crop_box] if mi.crop_box else None,
        "model_input_shape": list(mi.array.shape),
        "preprocess_s": round(t1 - t0, 1),
        "predict_s": round(t2 - t1, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _figure(name: str, t1: np.ndarray, labels: np.ndarray, spec) -> None:
    """Coronal and axial slices of the (conformed, LIA) T1 with the labels: ``zoo/<name>.png``.

    The arrays are (z, y, x) = (A, I, L) voxel axes: a coronal slice is ``[z]`` (superior up,
    the patient's left on the image's right, as radiologists read), an axial slice is ``[:, y]``
    flipped so that anterior is up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = json.loads((Path(spec.weights).parent / "colormap.json").read_text())
    lut = np.stack([colours["R"], colours["G"], colours["B"]], 1) / 255.0
    names = spec.classes
    k = names.index("Hippocampus") if "Hippocampus" in names else 1
    zc, yc, _ = np.round(np.argwhere(labels == k).mean(axis=0)).astype(int)
    views = [(t1[zc], labels[zc], "coronal"), (t1[:, yc][::-1], labels[:, yc][::-1], "axial")]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), dpi=80)
    for ax, (img, lab, title) in zip(axes, views, strict=True):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        rgba = np.zeros((*lab.shape, 4))
        rgba[..., :3] = lut[lab]
        rgba[..., 3] = np.where(lab > 0, 0.45, 0.0)
        ax.imshow(rgba, interpolation="nearest")
        ax.set_title(f"{title} (patient's left on the right)", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{name} on the real T1", fontsize=10)
    fig.tight_layout()
    fig.savefig(ZOO / f"{name}.png")
    plt.close(fig)


def _card(name: str, m: dict) -> str:
    from napari_mlmi_interp.models import ModelSpec
    from napari_mlmi_interp.models.tfjs import read_tfjs_topology

    spec = ModelSpec.from_file(ZOO / f"{name}.json")
    topo = read_tfjs_topology(spec.weights)
    folder, upstream_id, upstream_name = UPSTREAM[name]
    convs = [layer.describe().split(": ", 1)[1] for layer in topo.layers if layer.class_name == "Conv3D"]
    crop = spec.input.crop
    crop_text = (
        f"voxels above {crop.threshold:g} x the maximum of the normalised volume"
        if crop.to == "foreground" and crop.threshold > 0
        else ("voxels above 0" if crop.to == "foreground" else f"the brain mask of `{crop.model}`")
    )
    norm = spec.normalization
    norm_text = (
        "min-max over the conformed 256³ volume (minimum -> 0, maximum -> 1)"
        if norm.kind == "minmax"
        else f"brainchop's quantile normalisation over the conformed 256³ volume: the sorted values at "
        f"index floor(n x {norm.lower / 100:g}) and ceil(n x {norm.upper / 100:g}) - 1 map to 0 and 1, "
        "not clipped"
    )
    lines = [
        f"# Model card: {name}",
        "",
        spec.description,
        "",
        f"- **Source:** brainchop (https://github.com/neuroneural/brainchop), `models/{folder}/`, "
        f'entry {upstream_id} "{upstream_name}" of `brainchop-parameters.js`; MIT licence '
        f"(`{name}/LICENSE`). Weights and topology unchanged (TF.js layers format, loaded by "
        "`napari_mlmi_interp.models.tfjs` without TensorFlow).",
        f"- **Task:** segmentation; {len(spec.classes)} classes (index = output channel, from "
        f"`colormap.json`): {', '.join(spec.classes)}",
        f"- **Architecture:** MeshNet, {len(convs)} Conv3D layers, {topo.n_parameters:,} parameters: "
        f"{'; '.join(convs[:-1][:5])}; ... ; output {convs[-1]}",
        f"- **Class-activation layer:** `{', '.join(spec.cam_layers)}` (the last 3x3x3 convolution)",
        "",
        "## Preprocessing (the spec's `input` and `normalization`)",
        "",
        "1. Conform: reorient to voxel axes L, I, A (`orientation: LIA`), resample to 1 mm, centre "
        "crop/pad to 256³; the model sees the array as nibabel reads the conformed NIfTI, (x, y, z) "
        "(`axes: xyz`). A FreeSurfer-conformed scan such as the real T1 passes through unchanged.",
        f"2. Normalise: {norm_text}.",
        f"3. Crop to {crop_text}, plus {crop.padding_mm:g} mm on every side, clamped to the volume "
        "(brainchop's `enableCrop`, `autoThreshold`/`preModelId`, `cropPadding`). The inverse puts "
        "the labels back at the same voxels; outside the box is background.",
    ]
    if name == "brainchop-aparc50":
        lines.append(
            "\n**Deviation from brainchop.** brainchop crops this model's input with the mask of its "
            'model 1 ("Tissue GWM (light)", not shipped here); the zoo uses `brainchop-mindgrab`\'s brain '
            "mask instead (brainchop's own brain-extraction model)."
        )
    lines += [
        "",
        "brainchop's optional post-processing (3D connected components, `isPostProcessEnable`) is not "
        "applied: volumes are the model's argmax as it is.",
        "",
        "## Measured on the real T1 (`mlmi-interp sample --real`, 256³, 1 mm)",
        "",
        f"Crop box (z, y, x voxels of the conformed grid): {m['crop_box_zyx']}; model input "
        f"{m['model_input_shape'][1:]} (x, y, z). Run time on this project's 2-core CPU "
        f"(torch {m['torch']}, {m['threads']} threads): preprocessing {m['preprocess_s']} s"
        + (" (includes the mindgrab pre-model)" if name == "brainchop-aparc50" else "")
        + f", prediction (forward, argmax, inverse) {m['predict_s']} s; peak memory "
        f"{m['peak_rss_gb']} GB (process maximum resident set).",
        "",
        f"![{name} on the real T1: coronal and axial slices with its labels]({name}.png)",
        "",
        f"Left / right: voxels either side of the brain's midline (LPS x = {m['midline_lps_x_mm']} mm, "
        "the centroid of all non-background voxels; the models merge homologous structures).",
        "",
        "| label | volume (mL) | left (mL) | right (mL) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for c, v in m["volumes_ml"].items():
        left, right = m["left_right_ml"][c]
        lines.append(f"| {c} | {v:.2f} | {left:.2f} | {right:.2f} |")
    lines += [
        "",
        "Reproduce: `python sample_data/brainchop_cards.py` (writes this card and `brainchop-volumes.json`).",
        "",
        "**Intended use.** Research and demonstration: explanations of a real segmenter on real "
        "anatomy. Not a medical device; never use it on patient data to make decisions.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", default=None)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    figures = {}
    for name in NAMES:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True
        )
        figures[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, figures[name]["predict_s"], "s", file=sys.stderr)
    figures["_measured_on"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    (ZOO / "brainchop-volumes.json").write_text(json.dumps(figures, indent=2) + "\n")
    for name in NAMES:
        (ZOO / f"{name}.md").write_text(_card(name, figures[name]))


if __name__ == "__main__":
    main()
