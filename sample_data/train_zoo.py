"""Train the demo zoo: lesion classifier, prototype network, segmenter, shortcut classifier.

    python sample_data/train_zoo.py                 # full run, writes napari_mlmi_interp/models/zoo
    python sample_data/train_zoo.py --only protonet # retrain the prototype network alone
    python sample_data/train_zoo.py --quick --out /tmp/zoo   # a tiny run (tests)

Deterministic: fixed seeds, CPU, two threads. Training data are synthetic subjects
(:mod:`napari_mlmi_interp.synthetic`) generated directly on the models' grid (3 mm, 56 x 64 x
56, RAS); validation picks the best epoch; the test split is generated on the template's
native 2 mm grid and goes through :func:`napari_mlmi_interp.models.predict`, the same path
a user's scan takes (preprocessing, model, inverse mapping). Every figure in the model
cards comes from this script's ``metrics.json``. ``--only protonet`` starts the prototype
network from the lesion classifier already in ``--out`` (exactly what a full run does with the
classifier it has just trained), rewrites only the prototype network's files and its entry in
``metrics.json``, and leaves every other model's files byte-identical.
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
from napari_mlmi_interp.sample import make_sample
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
#: A latent cell of the prototype network (2 x 2 x 2 model voxels, a 6 mm cube) counts as
#: *lesion* when at least this fraction of it lies inside the lesion mask, and as *normal*
#: when none of it does (cells on the boundary are neither).
LESION_CELL_FRACTION = 0.5
#: Half the side of a prototype's source patch, in model voxels (24 x 24 slices, 72 mm).
PATCH_HALF = 12
#: The outlined region of a source patch: its voxels whose (upsampled) similarity to the
#: prototype is at least this percentile of the patch's, connected to the centre (ProtoPNet's
#: 95th-percentile rule, Chen et al. 2019, applied to the 24^3 patch around the pushed cell).
REGION_PERCENTILE = 95.0

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
                cluster, separation = prototype_costs(net, out["latent"], cell_fractions(train["mask"][idx]))
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


def cell_fractions(mask: np.ndarray) -> torch.Tensor:
    """Fraction of each latent cell inside the lesion, ``(B, d, h, w)``, from model-grid masks.

    The prototype network's latent grid is 1/2 of the model grid (one pooled block), so a
    cell is a 2 x 2 x 2 block of model voxels.
    """
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[:, None]
    return torch.nn.functional.avg_pool3d(m, 2)[:, 0]


def prototype_costs(net: ProtoNet3D, z: torch.Tensor, fraction: torch.Tensor) -> tuple:
    """ProtoPNet's cluster and separation costs at the level of latent cells.

    ProtoPNet's image-level costs (Chen et al. 2019) let a *lesion* prototype settle on any
    patch of a lesion image, and a lesion image is more than 99 % normal brain: in the first
    zoo, 3 of the 5 lesion prototypes were pushed onto normal tissue, matched every brain, and
    the network called the sample "no lesion". The synthetic subjects have exact masks, so the
    costs use them (as IAIA-BL's fine-annotation loss does, Barnett et al. 2021): the cluster
    cost pulls lesion prototypes to lesion cells and normal prototypes to normal cells; the
    separation cost pushes lesion prototypes away from normal cells and normal ones away
    from lesion cells.
    """
    d = net.distances(z)  # (B, P, d, h, w)
    lesion = (fraction >= LESION_CELL_FRACTION)[:, None]
    normal = (fraction == 0)[:, None]
    of_lesion = net.prototype_class_identity[:, CLASSES.index("lesion")] > 0
    big = d.detach().max() + 1

    def nearest(protos: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masked = d[:, protos] + big * (~cells).float()
        return masked.flatten(1).min(dim=1).values, cells.flatten(1).any(dim=1)

    near_lesion, has_lesion = nearest(of_lesion, lesion)
    near_normal, has_normal = nearest(~of_lesion, normal)
    far_lesion, _ = nearest(of_lesion, normal)
    far_normal, _ = nearest(~of_lesion, lesion)
    cluster = torch.cat([near_lesion[has_lesion], near_normal[has_normal]]).mean()
    separation = torch.cat([far_lesion[has_normal], far_normal[has_lesion]]).mean()
    return cluster, separation


def _planes(volume: np.ndarray, centre: np.ndarray, fill: float) -> np.ndarray:
    """Axial (y, x), coronal (z, x) and sagittal (z, y) slices, 2 * PATCH_HALF wide, through ``centre``."""
    half = PATCH_HALF
    padded = np.pad(volume, half, mode="constant", constant_values=fill)
    cz, cy, cx = np.asarray(centre) + half
    return np.stack(
        [
            padded[cz, cy - half : cy + half, cx - half : cx + half],
            padded[cz - half : cz + half, cy, cx - half : cx + half],
            padded[cz - half : cz + half, cy - half : cy + half, cx],
        ]
    )


def _similar_region(net: ProtoNet3D, z: torch.Tensor, j: int, shape: tuple, centre: np.ndarray) -> np.ndarray:
    """The outlined region around a pushed prototype, a boolean volume on the model grid.

    Prototype ``j``'s similarity map on its source scan, upsampled trilinearly to the model
    grid (as :func:`~napari_mlmi_interp.explain.prototype_report` shows it), thresholded at
    the :data:`REGION_PERCENTILE` percentile inside the patch cube, and the connected part
    holding the centre.
    """
    from scipy.ndimage import label

    with torch.no_grad():
        d = net.distances(z)[:, j : j + 1]
        sim = torch.log((d + 1) / (d + net.eps))
        up = torch.nn.functional.interpolate(sim, size=shape, mode="trilinear", align_corners=False)[0, 0]
    up = up.numpy()
    half = PATCH_HALF
    lo = np.maximum(np.asarray(centre) - half, 0)
    hi = np.minimum(np.asarray(centre) + half, shape)
    cube = np.zeros(shape, bool)
    cube[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    region = cube & (up >= np.percentile(up[cube], REGION_PERCENTILE))
    parts, _ = label(region)
    c = tuple(np.clip(centre, 0, np.asarray(shape) - 1))
    keep = parts[c] if parts[c] else parts.flat[np.argmax(np.where(region, up, -np.inf))]
    return parts == keep


def _patch_centre(mask: np.ndarray, loc: tuple, centre_vox: np.ndarray) -> np.ndarray:
    """The model-grid voxel the patch slices go through: the cell's lesion voxel nearest its centre.

    A cell is 2 x 2 x 2 voxels and its centre lies between them; slices through the rounded
    centre can miss a lesion that fills half of the cell, so when the cell holds lesion voxels
    the slices go through the one nearest the centre (the first, on a tie).
    """
    corner = 2 * np.asarray(loc)
    cell = np.argwhere(mask[tuple(slice(k, k + 2) for k in corner)]) + corner
    if not len(cell):
        return np.round(centre_vox).astype(int)
    return cell[np.argmin(((cell - centre_vox) ** 2).sum(axis=1))]


def push_prototypes(net: ProtoNet3D, train: dict, seeds: list[int]) -> list[dict]:
    """Project every prototype onto its nearest latent cell of its own kind in the training scans.

    A lesion prototype may only land on a lesion cell (at least :data:`LESION_CELL_FRACTION`
    of it inside a lesion) of a lesion scan, a normal prototype on any cell of a scan without a
    lesion; if no such cell exists (tiny runs), on any cell of a scan of its class. Each
    prototype's metadata records the lesion fraction of its cell and of its outlined region.
    """
    net.eval()
    pre = preprocessor()
    grid = pre.grid_for(template_grid())
    lesion_class = CLASSES.index("lesion")
    # per prototype, the nearest allowed cell (lesion cells for lesion prototypes) and, as a
    # fallback, the nearest cell of any scan of its class: (distance, (scan, cell, vector))
    allowed_best = [(np.inf, None)] * net.n_prototypes
    any_best = [(np.inf, None)] * net.n_prototypes
    with torch.no_grad():
        for i in range(len(train["y"])):
            z = net.latent(torch.from_numpy(train["x"][i : i + 1]))
            d = net.distances(z)[0]  # (P, d, h, w)
            lesion_cells = cell_fractions(train["mask"][i : i + 1])[0] >= LESION_CELL_FRACTION
            for j in range(net.n_prototypes):
                own = int(net.prototype_class_identity[j].argmax())
                if own != int(train["y"][i]):
                    continue
                tries = [(any_best, d[j])]
                if own == lesion_class and lesion_cells.any():
                    tries.append((allowed_best, torch.where(lesion_cells, d[j], torch.inf)))
                elif own != lesion_class:
                    tries.append((allowed_best, d[j]))
                for best, dj in tries:
                    flat = int(torch.argmin(dj))
                    value = float(dj.reshape(-1)[flat])
                    if value < best[j][0]:
                        loc = np.unravel_index(flat, d.shape[1:])
                        best[j] = (value, (i, loc, z[0, :, loc[0], loc[1], loc[2]].clone()))
        chosen = [a if a[1] is not None else b for a, b in zip(allowed_best, any_best, strict=True)]
        for j, (_value, found) in enumerate(chosen):
            if found is not None:
                net.prototypes.data[j, :, 0, 0, 0] = found[2]
        meta = []
        scale = np.array(train["x"].shape[2:]) / np.array(d.shape[1:])
        for j, (value, found) in enumerate(chosen):
            if found is None:
                continue
            i, loc, _vector = found
            centre_vox = (np.array(loc) + 0.5) * scale - 0.5  # model-grid voxel at the latent cell's centre
            vol = train["x"][i, 0]
            mask = train["mask"][i] > 0
            c = _patch_centre(mask, loc, centre_vox)
            z = net.latent(torch.from_numpy(train["x"][i : i + 1]))
            region = _similar_region(net, z, j, vol.shape, c)
            fraction = float(cell_fractions(train["mask"][i : i + 1])[0][tuple(loc)])
            meta.append(
                {
                    "index": j,
                    "class": CLASSES[int(net.prototype_class_identity[j].argmax())],
                    "source_case": f"case-synthetic-{seeds[i]}",
                    "source_seed": int(seeds[i]),
                    "latent_index": [int(v) for v in loc],
                    "model_grid_voxel": [round(float(v), 2) for v in centre_vox],
                    "lps_mm": [round(float(v), 2) for v in grid.to_lps(centre_vox)],
                    "patch_centre_voxel": [int(v) for v in c],
                    "distance": round(value, 5),
                    "lesion_fraction": round(fraction, 4),
                    "region_lesion_fraction": round(float(mask[region].mean()), 4),
                    "region_voxels": int(region.sum()),
                    "patch": _planes(vol, c, float(vol.min())).astype(np.float16),
                    "region": _planes(region, c, False),
                    "lesion": _planes(mask, c, False),
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
    """Weights and spec; keys this script does not write (``domain``, measured apart) are kept."""
    torch.save(net.state_dict(), out / f"{name}.pt")
    spec = {"name": name, "weights": f"{name}.pt", "format": "state_dict", "card": f"{name}.md", **spec}
    path = out / f"{name}.json"
    if path.is_file():
        spec.update({k: v for k, v in json.loads(path.read_text()).items() if k not in spec})
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return ModelSpec.from_file(out / f"{name}.json")


def evaluate(specs: dict[str, ModelSpec], n_test: int) -> dict:
    """Test split on the native 2 mm grid, through predict(): what a user gets.

    Evaluates the models in ``specs`` (keys classifier, protonet, segmenter, shortcut; all
    share one input spec, so the first model's preprocessing is reused by the others).
    """
    models = {k: load_model(s) for k, s in specs.items()}
    labels, scores, dices, pooled = [], {k: [] for k in ("classifier", "protonet")}, [], [0, 0]
    shortcut_with, shortcut_without, shortcut_labels = [], [], []
    for seed in split_seeds("test", n_test):
        sub = make_subject(seed)
        labels.append(sub.label)
        model_input = None
        for key in ("classifier", "protonet"):
            if key in models:
                pred = predict(sub.scan, models[key], model_input=model_input)
                model_input = pred.model_input
                scores[key].append(float(pred.probabilities[1]))
        if "segmenter" in models:
            seg = predict(sub.scan, models["segmenter"], model_input=model_input).segmentation.array > 0
            truth = sub.mask.array > 0
            if truth.any():
                dices.append(dice(truth, seg))
            pooled[0] += 2 * int((truth & seg).sum())
            pooled[1] += int(truth.sum() + seg.sum())
        if "shortcut" in models:
            marked = make_subject(seed, marker="if_lesion")
            shortcut_labels.append(sub.label)
            shortcut_with.append(predict(marked.scan, models["shortcut"]).predicted)
            shortcut_without.append(predict(sub.scan, models["shortcut"], model_input=model_input).predicted)
    y = np.array(labels)
    metrics: dict = {"n_test": len(labels), "n_test_positive": int(y.sum())}
    for key in ("classifier", "protonet"):
        if key in models:
            metrics[key] = {
                "auroc": auroc(y, scores[key]),
                "accuracy": accuracy(y, np.array(scores[key]) > 0.5),
            }
    if "protonet" in models:
        metrics["protonet"]["sample_brain"] = sample_prediction(models["protonet"])
    if "segmenter" in models:
        metrics["segmenter"] = {
            "dice_mean_positive_cases": float(np.mean(dices)) if dices else float("nan"),
            "dice_pooled": pooled[0] / pooled[1] if pooled[1] else float("nan"),
            "n_positive_cases": len(dices),
        }
    if "shortcut" in models:
        metrics["shortcut"] = {
            "accuracy_with_marker": accuracy(shortcut_labels, shortcut_with),
            "accuracy_without_marker": accuracy(shortcut_labels, shortcut_without),
        }
    return metrics


def sample_prediction(model) -> dict:
    """What ``model`` says of the shipped sample brain (one lesion; ``napari_mlmi_interp.sample``)."""
    pred = predict(make_sample().scan, model)
    return {
        "predicted": pred.label,
        "p_lesion": round(float(pred.probabilities[CLASSES.index("lesion")]), 4),
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
    parser.add_argument(
        "--only",
        choices=["protonet"],
        help="retrain only this model (the prototype network starts from the lesion classifier in --out); "
        "the other models' files stay as they are",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    try:
        return _train_protonet_only(args, cfg) if args.only == "protonet" else _train(args, cfg)
    finally:  # leave the process as it was (tests run this in-process)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


COMMON = {"classes": CLASSES, "input": INPUT, "normalization": NORM}


def train_protonet(out: Path, cnn: LesionCNN, train: dict, val: dict, seeds: list[int], cfg: dict, seed: int):
    """Train, push and write the prototype network; returns its spec.

    ProtoPNet starts from a pretrained CNN: here, the lesion classifier's backbone. Warm-up
    trains the add-on and prototype layers on the frozen backbone, then everything jointly at
    a lower rate (from scratch it stayed at chance: validation AUROC about 0.5), with the
    cell-level costs of :func:`prototype_costs`; then the push and the last layer.
    """
    torch.manual_seed(seed + 2)
    proto = ProtoNet3D()
    proto.features.load_state_dict(cnn.features.state_dict())
    for p in proto.features.parameters():
        p.requires_grad_(False)
    train_classifier(proto, train, val, cfg["epochs_proto_warm"], seed + 2, proto=True)
    for p in proto.features.parameters():
        p.requires_grad_(True)
    train_classifier(proto, train, val, cfg["epochs_proto"], seed + 6, proto=True, lr=1e-3)
    meta = push_prototypes(proto, train, seeds)
    train_last_layer(proto, train, val, cfg["epochs_last"], seed + 3)
    arrays = {
        "patches": np.stack([m.pop("patch") for m in meta]),
        "regions": np.stack([m.pop("region") for m in meta]).astype(np.uint8),
        "lesion": np.stack([m.pop("lesion") for m in meta]).astype(np.uint8),
    }
    np.savez_compressed(out / "lesion-protonet-prototypes.npz", **arrays)
    (out / "lesion-protonet-prototypes.json").write_text(
        json.dumps(
            {
                "patches": "lesion-protonet-prototypes.npz",
                "patch_axes": ["axial (y, x)", "coronal (z, x)", "sagittal (z, y)"],
                "patch_spacing_mm": INPUT["spacing_mm"],
                "regions": "the npz's 'regions': voxels of each source patch whose similarity to the "
                f"prototype is at least the patch's {REGION_PERCENTILE:g}th percentile, connected to "
                "the centre; 'lesion': the source scan's lesion mask on the same slices",
                "lesion_cell_fraction": LESION_CELL_FRACTION,
                "prototypes": meta,
            },
            indent=2,
        )
        + "\n"
    )
    return write_model(
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
            **COMMON,
        },
    )


def _protonet_training_record(seconds: float, only: bool) -> dict:
    return {
        "training_s": round(seconds, 1),
        "trained_with": "python sample_data/train_zoo.py" + (" --only protonet" if only else ""),
        "lesion_cell_fraction": LESION_CELL_FRACTION,
    }


def _train_protonet_only(args: argparse.Namespace, cfg: dict) -> dict:
    """Retrain the prototype network from the classifier in ``--out``; update its metrics entry."""
    out = args.out
    weights = out / "lesion-classifier.pt"
    if not weights.is_file():
        raise SystemExit(
            f"--only protonet needs the lesion classifier's weights in --out, got no file {weights}"
        )
    started = time.time()
    cnn = LesionCNN()
    cnn.load_state_dict(torch.load(weights, weights_only=True))
    log(f"generating {cfg['n_train']} training and {cfg['n_val']} validation subjects")
    train_seeds, val_seeds = split_seeds("train", cfg["n_train"]), split_seeds("val", cfg["n_val"])
    train, val = dataset(train_seeds), dataset(val_seeds)
    t = time.time()
    log("prototype network")
    spec = train_protonet(out, cnn, train, val, train_seeds, cfg, args.seed)
    seconds = time.time() - t
    log(f"evaluating on {cfg['n_test']} native-grid test subjects")
    result = evaluate({"protonet": spec}, cfg["n_test"])
    path = out / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    if metrics and metrics.get("n_test") != result["n_test"]:
        raise SystemExit(
            f"--only protonet must evaluate on the same test split as {path}, "
            f"got {result['n_test']} subjects where it has {metrics.get('n_test')}"
        )
    metrics.update({k: result[k] for k in ("n_test", "n_test_positive")})
    metrics["protonet"] = {**result["protonet"], **_protonet_training_record(seconds, True)}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    if "config" in metrics:
        _write_model_cards(out)
    log(json.dumps(metrics["protonet"], indent=1))
    log(f"done in {time.time() - started:.0f} s")
    return metrics


def _train(args: argparse.Namespace, cfg: dict) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    log(f"generating {cfg['n_train']} training and {cfg['n_val']} validation subjects")
    train_seeds, val_seeds = split_seeds("train", cfg["n_train"]), split_seeds("val", cfg["n_val"])
    train, val = dataset(train_seeds), dataset(val_seeds)
    common = COMMON  # the spec fields the classifiers share
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
    specs["protonet"] = train_protonet(out, cnn, train, val, train_seeds, cfg, args.seed)
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
    metrics = evaluate(specs, cfg["n_test"])
    timings["evaluation_s"] = time.time() - t
    metrics["protonet"].update(_protonet_training_record(timings["protonet_s"], False))
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
