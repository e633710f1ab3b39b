"""Train the demo zoo: lesion classifier, prototype network, segmenter, shortcut classifier.

    python sample_data/train_zoo.py                 # full run, writes napari_mlmi_interp/models/zoo
    python sample_data/train_zoo.py --quick --out /tmp/zoo   # a tiny run (tests)

Deterministic: fixed seeds, CPU, two threads. Training data are synthetic subjects
(:mod:`napari_mlmi_interp.synthetic`) generated directly on the models' grid (3 mm, 56 x 64 x
56, RAS); validation picks the best epoch; the test split is generated on the template's
native 2 mm grid and goes through :func:`napari_mlmi_interp.models.predict`, the same path
a user's scan takes (preprocessing, model, inverse mapping). Every figure in the model
cards comes from this script's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_mlmi_interp.metrics import accuracy, auroc, dice
from napari_mlmi_interp.models import InputSpec, ModelSpec, Normalization, Preprocessor, load_model, predict
from napari_mlmi_interp.models.zoo_nets import LesionCNN, ProtoNet3D
from napari_mlmi_interp.synthetic import MARKER_BOX_LPS, make_subject, split_seeds, template_grid

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "napari_mlmi_interp" / "models" / "zoo"

INPUT = {"spacing_mm": [3.0, 3.0, 3.0], "size": [56, 64, 56], "orientation": "RAS", "axes": "zyx"}
NORM = {"kind": "zscore", "nonzero": False}
CLASSES = ["no lesion", "lesion"]
CNN = "napari_mlmi_interp.models.zoo_nets:LesionCNN"
PROTO = "napari_mlmi_interp.models.zoo_nets:ProtoNet3D"
UNET_KW = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 2,
    "channels": [8, 16, 32, 64],
    "strides": [2, 2, 2],
    "num_res_units": 1,
}

FULL = {
    "n_train": 480,
    "n_val": 96,
    "n_test": 100,
    "epochs_cls": 12,
    "epochs_cls_fine": 3,
    "epochs_proto_warm": 3,
    "epochs_proto": 4,
    "epochs_last": 4,
    "epochs_seg": 10,
    "epochs_shortcut": 6,
    "epochs_shortcut_fine": 2,
}
QUICK = {
    "n_train": 8,
    "n_val": 4,
    "n_test": 4,
    "epochs_cls": 1,
    "epochs_cls_fine": 1,
    "epochs_proto_warm": 1,
    "epochs_proto": 1,
    "epochs_last": 1,
    "epochs_seg": 1,
    "epochs_shortcut": 1,
    "epochs_shortcut_fine": 1,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def preprocessor() -> Preprocessor:
    return Preprocessor(InputSpec(**INPUT), Normalization(**NORM))


def dataset(seeds: list[int], *, marker_from_label: bool = False) -> dict[str, np.ndarray]:
    """Subjects generated on the model grid, normalised: x (N,1,D,H,W), y (N,), mask (N,D,H,W)."""
    pre = preprocessor()
    grid = pre.grid_for(template_grid())
    xs, ys, masks = [], [], []
    for seed in seeds:
        sub = make_subject(seed, grid=grid, marker="if_lesion" if marker_from_label else False)
        mi = pre.forward(sub.scan, grid=grid)
        xs.append(mi.array)
        ys.append(sub.label)
        masks.append((sub.mask.array > 0).astype(np.uint8))
    return {"x": np.stack(xs), "y": np.array(ys), "mask": np.stack(masks)}


def batches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, size):
        yield order[i : i + size]


def scores_of(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 16):
            logits = net(torch.from_numpy(x[i : i + 16]))
            out.append(torch.softmax(logits, 1)[:, 1].numpy())
    return np.concatenate(out)


def train_classifier(net, train, val, epochs, seed, *, proto=False, lr=3e-3):
    """Adam, cross-entropy (+ ProtoPNet cluster/separation costs); best epoch by validation AUROC."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    best, best_auc = copy.deepcopy(net.state_dict()), -1.0
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for idx in batches(len(train["y"]), 8, rng):
            x = torch.from_numpy(train["x"][idx])
            y = torch.from_numpy(train["y"][idx]).long()
            if proto:
                out = net.forward_details(x)
                loss = torch.nn.functional.cross_entropy(out["logits"], y)
                identity = net.prototype_class_identity[:, y].t()  # (B, P): prototype of own class
                big = out["min_distances"].max().detach() + 1
                cluster = (out["min_distances"] + big * (1 - identity)).min(dim=1).values.mean()
                separation = (out["min_distances"] + big * identity).min(dim=1).values.mean()
                loss = loss + 0.8 * cluster - 0.08 * separation
            else:
                loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        auc = auroc(val["y"], scores_of(net, val["x"]))
        auc = -1.0 if np.isnan(auc) else auc
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(train['y']):.4f}, val AUROC {auc:.4f}")
        if auc > best_auc:
            best, best_auc = copy.deepcopy(net.state_dict()), auc
    net.load_state_dict(best)
    return best_auc


def train_cnn(train, val, epochs: int, epochs_fine: int, seed: int) -> tuple[LesionCNN, float]:
    """Coarse to fine: train at 1/8 resolution, then fine-tune the same weights at 1/2.

    At 1/2 resolution from scratch the network never found the lesion (validation AUROC
    about 0.5 after 8 epochs: max pooling over 25,000 cells rarely lands on it at first);
    at 1/8 it does within 4 epochs. The parameters are the same in both layouts.
    """
    torch.manual_seed(seed)
    coarse = LesionCNN(pooled_blocks=3)
    train_classifier(coarse, train, val, epochs, seed)
    log("  fine-tuning at 1/2 resolution")
    net = LesionCNN()
    net.load_state_dict(coarse.state_dict())
    return net, train_classifier(net, train, val, epochs_fine, seed + 100, lr=1e-3)


def push_prototypes(net: ProtoNet3D, train: dict, seeds: list[int]) -> list[dict]:
    """Project every prototype onto its nearest latent patch among training scans of its class."""
    net.eval()
    pre = preprocessor()
    grid = pre.grid_for(template_grid())
    best = [(np.inf, None)] * net.n_prototypes
    with torch.no_grad():
        for i in range(len(train["y"])):
            z = net.latent(torch.from_numpy(train["x"][i : i + 1]))
            d = net.distances(z)[0]  # (P, d, h, w)
            for j in range(net.n_prototypes):
                if int(net.prototype_class_identity[j].argmax()) != int(train["y"][i]):
                    continue
                flat = int(torch.argmin(d[j]))
                value = float(d[j].reshape(-1)[flat])
                if value < best[j][0]:
                    loc = np.unravel_index(flat, d.shape[1:])
                    best[j] = (value, (i, loc, z[0, :, loc[0], loc[1], loc[2]].clone()))
        meta = []
        scale = np.array(train["x"].shape[2:]) / np.array(d.shape[1:])
        for j, (value, found) in enumerate(best):
            if found is None:
                continue
            i, loc, vec = found
            net.prototypes.data[j, :, 0, 0, 0] = vec
            centre_vox = (np.array(loc) + 0.5) * scale - 0.5  # model-grid voxel at the latent cell's centre
            vol = train["x"][i, 0]
            c = np.round(centre_vox).astype(int)
            half = 12
            padded = np.pad(vol, half, mode="constant", constant_values=float(vol.min()))
            cz, cy, cx = c + half
            patch = np.stack(
                [
                    padded[cz, cy - half : cy + half, cx - half : cx + half],  # axial (y, x)
                    padded[cz - half : cz + half, cy, cx - half : cx + half],  # coronal (z, x)
                    padded[cz - half : cz + half, cy - half : cy + half, cx],  # sagittal (z, y)
                ]
            )
            meta.append(
                {
                    "index": j,
                    "class": CLASSES[int(net.prototype_class_identity[j].argmax())],
                    "source_case": f"case-synthetic-{seeds[i]}",
                    "source_seed": int(seeds[i]),
                    "latent_index": [int(v) for v in loc],
                    "model_grid_voxel": [round(float(v), 2) for v in centre_vox],
                    "lps_mm": [round(float(v), 2) for v in grid.to_lps(centre_vox)],
                    "distance": round(value, 5),
                    "patch": patch.astype(np.float16),
                }
            )
    return meta


def train_last_layer(net: ProtoNet3D, train, val, epochs, seed):
    for p in net.parameters():
        p.requires_grad_(False)
    net.last_layer.weight.requires_grad_(True)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam([net.last_layer.weight], lr=1e-3)
    wrong = 1 - net.prototype_class_identity.t()
    net.eval()  # BatchNorm frozen: the pushed prototypes must stay equal to their source patches
    for _ in range(epochs):
        for idx in batches(len(train["y"]), 8, rng):
            x = torch.from_numpy(train["x"][idx])
            y = torch.from_numpy(train["y"][idx]).long()
            loss = (
                torch.nn.functional.cross_entropy(net(x), y)
                + 1e-4 * (net.last_layer.weight * wrong).abs().sum()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in net.parameters():
        p.requires_grad_(True)


def train_segmenter(net, train, val, epochs, seed):
    from monai.losses import DiceCELoss

    rng = np.random.default_rng(seed)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    best, best_dice = copy.deepcopy(net.state_dict()), -1.0
    for epoch in range(epochs):
        net.train()
        for idx in batches(len(train["y"]), 4, rng):
            x = torch.from_numpy(train["x"][idx])
            y = torch.from_numpy(train["mask"][idx][:, None].astype(np.int64))
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            pred = np.concatenate(
                [
                    net(torch.from_numpy(val["x"][i : i + 8])).argmax(1).numpy()
                    for i in range(0, len(val["x"]), 8)
                ]
            )
        d = dice(val["mask"] > 0, pred > 0)
        log(f"  epoch {epoch + 1}/{epochs}: val pooled Dice {d:.4f}")
        if d > best_dice:
            best, best_dice = copy.deepcopy(net.state_dict()), d
    net.load_state_dict(best)
    return best_dice


def write_model(out: Path, name: str, net, spec: dict) -> ModelSpec:
    torch.save(net.state_dict(), out / f"{name}.pt")
    spec = {"name": name, "weights": f"{name}.pt", "format": "state_dict", "card": f"{name}.md", **spec}
    (out / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
    return ModelSpec.from_file(out / f"{name}.json")


def evaluate(out: Path, specs: dict[str, ModelSpec], n_test: int) -> dict:
    """Test split on the native 2 mm grid, through predict(): what a user gets."""
    models = {k: load_model(s) for k, s in specs.items()}
    labels, scores, dices, pooled = [], {k: [] for k in ("classifier", "protonet")}, [], [0, 0]
    shortcut_with, shortcut_without, shortcut_labels = [], [], []
    for seed in split_seeds("test", n_test):
        sub = make_subject(seed)
        labels.append(sub.label)
        first = predict(sub.scan, models["classifier"])  # all four models share one input spec
        scores["classifier"].append(float(first.probabilities[1]))
        scores["protonet"].append(
            float(predict(sub.scan, models["protonet"], model_input=first.model_input).probabilities[1])
        )
        seg = predict(sub.scan, models["segmenter"], model_input=first.model_input).segmentation.array > 0
        truth = sub.mask.array > 0
        if truth.any():
            dices.append(dice(truth, seg))
        pooled[0] += 2 * int((truth & seg).sum())
        pooled[1] += int(truth.sum() + seg.sum())
        marked = make_subject(seed, marker="if_lesion")
        shortcut_labels.append(sub.label)
        shortcut_with.append(predict(marked.scan, models["shortcut"]).predicted)
        shortcut_without.append(
            predict(sub.scan, models["shortcut"], model_input=first.model_input).predicted
        )
    y = np.array(labels)
    return {
        "n_test": len(labels),
        "n_test_positive": int(y.sum()),
        "classifier": {
            "auroc": auroc(y, scores["classifier"]),
            "accuracy": accuracy(y, np.array(scores["classifier"]) > 0.5),
        },
        "protonet": {
            "auroc": auroc(y, scores["protonet"]),
            "accuracy": accuracy(y, np.array(scores["protonet"]) > 0.5),
        },
        "segmenter": {
            "dice_mean_positive_cases": float(np.mean(dices)) if dices else float("nan"),
            "dice_pooled": pooled[0] / pooled[1] if pooled[1] else float("nan"),
            "n_positive_cases": len(dices),
        },
        "shortcut": {
            "accuracy_with_marker": accuracy(shortcut_labels, shortcut_with),
            "accuracy_without_marker": accuracy(shortcut_labels, shortcut_without),
        },
    }


def _write_model_cards(out: Path) -> None:
    """Run write_model_cards.py (beside this script) on ``out``, whatever the import path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "write_model_cards", Path(__file__).with_name("write_model_cards.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="a tiny run for tests (not the shipped weights)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(args, cfg)
    finally:  # leave the process as it was (tests run this in-process)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace, cfg: dict) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    log(f"generating {cfg['n_train']} training and {cfg['n_val']} validation subjects")
    train_seeds, val_seeds = split_seeds("train", cfg["n_train"]), split_seeds("val", cfg["n_val"])
    train, val = dataset(train_seeds), dataset(val_seeds)
    common = {"classes": CLASSES, "input": INPUT, "normalization": NORM}
    specs: dict[str, ModelSpec] = {}
    timings: dict[str, float] = {}

    t = time.time()
    log("classifier")
    cnn, val_auc = train_cnn(train, val, cfg["epochs_cls"], cfg["epochs_cls_fine"], args.seed + 1)
    specs["classifier"] = write_model(
        out,
        "lesion-classifier",
        cnn,
        {
            "task": "classification",
            "architecture": CNN,
            "architecture_kwargs": {},
            "cam_layers": ["features.3"],
            "description": "3D CNN: is there a lesion in this brain MR? (demonstration only)",
            **common,
        },
    )
    timings["classifier_s"], t = time.time() - t, time.time()

    log("prototype network")
    # ProtoPNet starts from a pretrained CNN: here, the lesion classifier's backbone. Warm-up
    # trains the add-on and prototype layers on the frozen backbone, then everything jointly
    # at a lower rate. (From scratch it stayed at chance: validation AUROC about 0.5.)
    torch.manual_seed(args.seed + 2)
    proto = ProtoNet3D()
    proto.features.load_state_dict(cnn.features.state_dict())
    for p in proto.features.parameters():
        p.requires_grad_(False)
    train_classifier(proto, train, val, cfg["epochs_proto_warm"], args.seed + 2, proto=True)
    for p in proto.features.parameters():
        p.requires_grad_(True)
    train_classifier(proto, train, val, cfg["epochs_proto"], args.seed + 6, proto=True, lr=1e-3)
    meta = push_prototypes(proto, train, train_seeds)
    train_last_layer(proto, train, val, cfg["epochs_last"], args.seed + 3)
    np.savez_compressed(
        out / "lesion-protonet-prototypes.npz", patches=np.stack([m.pop("patch") for m in meta])
    )
    (out / "lesion-protonet-prototypes.json").write_text(
        json.dumps(
            {
                "patches": "lesion-protonet-prototypes.npz",
                "patch_axes": ["axial (y, x)", "coronal (z, x)", "sagittal (z, y)"],
                "patch_spacing_mm": INPUT["spacing_mm"],
                "prototypes": meta,
            },
            indent=2,
        )
        + "\n"
    )
    specs["protonet"] = write_model(
        out,
        "lesion-protonet",
        proto,
        {
            "task": "classification",
            "architecture": PROTO,
            "architecture_kwargs": {},
            "cam_layers": ["features.3"],
            "prototype": True,
            "prototype_metadata": "lesion-protonet-prototypes.json",
            "description": "3D prototype network (ProtoPNet-style): this looks like that "
            "(demonstration only)",
            **common,
        },
    )
    timings["protonet_s"], t = time.time() - t, time.time()

    log("segmenter")
    from monai.networks.nets import UNet

    torch.manual_seed(args.seed + 4)
    unet = UNet(**UNET_KW)
    val_dice = train_segmenter(unet, train, val, cfg["epochs_seg"], args.seed + 4)
    specs["segmenter"] = write_model(
        out,
        "lesion-segmenter",
        unet,
        {
            "task": "segmentation",
            "classes": ["background", "lesion"],
            "architecture": "monai:UNet",
            "architecture_kwargs": UNET_KW,
            "input": INPUT,
            "normalization": NORM,
            "cam_layers": ["model.1"],
            "description": "MONAI 3D UNet lesion segmentation (demonstration only)",
        },
    )
    timings["segmenter_s"], t = time.time() - t, time.time()

    log("shortcut classifier (marker present exactly when a lesion is)")
    shortcut_train = dataset(train_seeds, marker_from_label=True)
    shortcut_val = dataset(val_seeds, marker_from_label=True)
    shortcut, _ = train_cnn(
        shortcut_train, shortcut_val, cfg["epochs_shortcut"], cfg["epochs_shortcut_fine"], args.seed + 5
    )
    specs["shortcut"] = write_model(
        out,
        "shortcut-classifier",
        shortcut,
        {
            "task": "classification",
            "architecture": CNN,
            "architecture_kwargs": {},
            "cam_layers": ["features.3"],
            "description": "3D CNN trained where a burned-in tag marks every lesion case: "
            "right for the wrong "
            "reason (demonstration of a shortcut)",
            **common,
        },
    )
    timings["shortcut_s"], t = time.time() - t, time.time()

    log(f"evaluating on {cfg['n_test']} native-grid test subjects")
    metrics = evaluate(out, specs, cfg["n_test"])
    timings["evaluation_s"] = time.time() - t
    metrics.update(
        {
            "validation": {"classifier_auroc": val_auc, "segmenter_pooled_dice": val_dice},
            "config": {
                **cfg,
                "seed": args.seed,
                "quick": args.quick,
                "input": INPUT,
                "normalization": NORM,
                "marker_box_lps_mm": MARKER_BOX_LPS,
            },
            "timings": {
                **{k: round(v, 1) for k, v in timings.items()},
                "total_s": round(time.time() - started, 1),
            },
            "environment": {
                "torch": torch.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
            },
        }
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_model_cards(out)
    log(json.dumps({k: metrics[k] for k in ("classifier", "protonet", "segmenter", "shortcut")}, indent=1))
    return metrics


if __name__ == "__main__":
    main()
