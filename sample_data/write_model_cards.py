"""Write the demo zoo's model cards from the figures ``train_zoo.py`` measured.

    python sample_data/write_model_cards.py [ZOO_DIR]

Every number in a card is read from ``ZOO_DIR/metrics.json``; nothing is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = ROOT / "napari_mlmi_interp" / "models" / "zoo"

TARGETS = {
    "lesion-classifier": ("AUROC", "classifier", "auroc", 0.90),
    "lesion-protonet": ("AUROC", "protonet", "auroc", 0.85),
    "lesion-segmenter": ("Dice, pooled over all test voxels", "segmenter", "dice_pooled", 0.70),
}

DATA = """\
**Training data.** Synthetic subjects from `napari_mlmi_interp.synthetic`: the MNI ICBM152
2009a T1 template (real anatomy, an average of 152 adults) under a random affine (±7°,
±8 % scale, ±5 mm) and smooth deformation (up to 4 mm), bias field, gamma contrast,
intensity scale and noise, with 0–2 lesions (probabilities 0.5 / 0.3 / 0.2) of 3–15 mm
equivalent radius (log-uniform), 25–70 % brighter than white matter, placed in white
matter, with exact masks. {n_train} training and {n_val} validation subjects (seeds
0–{last_train} and 100000–{last_val}), generated on the model grid (3 mm, 56 x 64 x 56, RAS).
**Test data:** {n_test} subjects (seeds 200000–{last_test}, {n_pos} with a lesion),
generated on the template's native 2 mm grid and run through `predict()` (preprocessing,
model, inverse mapping): what a user's scan goes through."""

INTENDED = """\
**Intended use.** Demonstration only: showing how explanations, prototypes and the
interpretability framework behave on a model whose ground truth is known. Not a medical
device; never use it on patient data to make decisions."""


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def card(name: str, spec: dict, metrics: dict) -> str:
    cfg = metrics["config"]
    lines = [f"# Model card: {name}", "", spec.get("description", ""), ""]
    lines += [
        f"- **Task:** {spec['task']}; classes: {', '.join(spec['classes'])}",
        f"- **Architecture:** `{spec['architecture']}` {json.dumps(spec.get('architecture_kwargs') or {})}",
        f"- **Input:** {json.dumps(spec['input'])}; normalisation {json.dumps(spec['normalization'])}",
        f"- **Class-activation layers:** {', '.join(spec.get('cam_layers') or []) or 'none'}",
        f"- **Weights:** `{spec['weights']}` (state_dict; loads with `weights_only=True`)",
        "",
        DATA.format(
            n_train=cfg["n_train"],
            n_val=cfg["n_val"],
            n_test=metrics["n_test"],
            n_pos=metrics["n_test_positive"],
            last_train=cfg["n_train"] - 1,
            last_val=100000 + cfg["n_val"] - 1,
            last_test=200000 + metrics["n_test"] - 1,
        ),
        "",
        "## Measured on the test split",
        "",
    ]
    if name in TARGETS:
        label, key, metric, target = TARGETS[name]
        value = metrics[key][metric]
        met = "meets" if value >= target else "**misses**"
        lines.append(f"- {label}: **{_fmt(value)}** (target ≥ {target:.2f}: {met} it)")
        for other, v in metrics[key].items():
            if other != metric and key != "segmenter" and not isinstance(v, dict | str):
                if key == "protonet" and other not in ("accuracy",):
                    continue
                lines.append(f"- {other.replace('_', ' ')}: {_fmt(v) if isinstance(v, float) else v}")
        sample = metrics[key].get("sample_brain")
        if sample:
            lines.append(
                f"- on the sample brain (`napari_mlmi_interp.sample`: the template with one lesion of "
                f"about 7 mm radius): **{sample['predicted']}**, p(lesion) = {sample['p_lesion']:.3f}"
            )
    if name == "lesion-segmenter":
        per_case = metrics["segmenter"]["dice_mean_positive_cases"]
        verdict = "also meets" if per_case >= 0.70 else "**misses**"
        lines += [
            "",
            f"The mean of per-case Dice over the {metrics['segmenter']['n_positive_cases']} test cases "
            f"with a lesion is {_fmt(per_case)}: it {verdict} 0.70. Lesions of 3-5 mm radius are one",
            "or two voxels across at the model's 3 mm spacing, so a one-voxel miss halves their Dice;",
            "larger lesions are segmented well, and pooled Dice weights each voxel equally.",
        ]
    if name == "shortcut-classifier":
        s = metrics["shortcut"]
        lines += [
            "- Accuracy when the tag marks every lesion case, as in training: "
            f"**{_fmt(s['accuracy_with_marker'])}**",
            f"- Accuracy on the same scans without the tag: **{_fmt(s['accuracy_without_marker'])}**",
            "",
            "**Why it exists.** In its training data a bright burned-in tag (a box in the air at the",
            f"right-anterior-superior corner, LPS {cfg['marker_box_lps_mm']} mm) appears exactly when a",
            "lesion is present. The network scores well by looking at the tag, not the brain: right for",
            "the wrong reason. Its explanations should sit on the tag; catching that is what the",
            "plugin's localization evidence is for. The sample data menu has a shortcut case.",
        ]
    proto = metrics.get("protonet", {}) if spec.get("prototype") else {}
    if spec.get("prototype"):
        lines += [
            "",
            "**Training.** As in ProtoPNet, the backbone starts from a trained CNN (the lesion",
            "classifier's); the add-on and prototype layers warm up on the frozen backbone, then all",
            "layers train jointly with cross-entropy plus cluster and separation costs. The costs work",
            "on latent cells (6 mm cubes) labelled from the exact lesion masks: a cell is *lesion* when",
            f"at least {proto['lesion_cell_fraction'] * 100:g} % of it is inside a lesion, *normal* when",
            "none of it is. Lesion prototypes are pulled to lesion cells and pushed away from normal ones,",
            "normal prototypes the other way round (ProtoPNet's image-level costs let a lesion prototype",
            "settle on the normal brain around a lesion; see docs/demo_zoo.md).",
            "",
            '**Prototypes.** Prototypes were projected onto their nearest training patches ("push"), a',
            f"lesion prototype only onto a lesion cell. `{spec['prototype_metadata']}` lists each",
            "prototype's class, source case (seed), latent cell, model-grid voxel, LPS position and the",
            "lesion fraction of its cell; the companion `.npz` holds three orthogonal 24 x 24 slices",
            "(3 mm) through each source patch, the region most similar to the prototype on them (the",
            "prototype panel outlines it) and the source scan's lesion mask.",
        ]
    t = metrics["timings"]
    env = f"{metrics['environment']['threads']} CPU threads (torch {metrics['environment']['torch']})"
    if proto.get("trained_with", "").endswith("--only protonet"):
        cost = (
            f"**Training cost.** This model: {proto['training_s'] / 60:.1f} min on {env}, retrained alone "
            "with `python sample_data/train_zoo.py --only protonet` (from the lesion classifier's weights); "
            f"the whole zoo: {t['total_s'] / 60:.1f} min with `python sample_data/train_zoo.py`."
        )
    else:
        cost = (
            f"**Training cost.** Whole zoo: {t['total_s'] / 60:.1f} min on {env}; reproduce with "
            "`python sample_data/train_zoo.py`."
        )
    lines += [
        "",
        cost,
        "",
        INTENDED,
        "",
    ]
    return "\n".join(lines)


def main(zoo: Path = DEFAULT_ZOO) -> None:
    metrics = json.loads((zoo / "metrics.json").read_text())
    for spec_path in sorted(zoo.glob("*.json")):
        if spec_path.name == "metrics.json" or spec_path.name.endswith("-prototypes.json"):
            continue
        spec = json.loads(spec_path.read_text())
        (zoo / f"{spec['name']}.md").write_text(card(spec["name"], spec, metrics))
        print(zoo / f"{spec['name']}.md")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ZOO)
