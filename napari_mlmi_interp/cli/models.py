"""Models and methods: ``models`` (the zoo and entry points), ``predict``, ``methods``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import QUIET_HELP, CliError, _Bar, _load, _out_dir, _progress_on, _warn


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import available_models, resolve_model

    # given models (a bundle folder, a .pt2, an .onnx, a spec) are loaded: their spec as read
    specs = [resolve_model(m).spec for m in args.model] if args.model else available_models()
    if args.json:
        print(json.dumps([s.summary() for s in specs], indent=2))
        return 0
    if not specs:
        print("no models (built-in zoo empty, no entry points)")
    for s in specs:
        kind = "prototype " if s.prototype else ""
        print(f"{s.name:28s} {kind}{s.task:15s} classes: {', '.join(s.classes)}   [{s.source}]")
    return 0


def _print_prediction(pred: Any, name: str, model_name: str) -> None:
    """Class probabilities (classifier) or segmented volumes in mL, one line each."""
    print(f"{name}  [{model_name}]")
    if pred.probabilities is not None:
        for c, p in zip(pred.classes, pred.probabilities, strict=True):
            print(f"    {c:20s} {p:.4f}{'  <- predicted' if c == pred.label else ''}")
    else:
        for c, ml in pred.volumes_ml.items():
            print(f"    {c:20s} {ml:.3f} mL")


def _write_segmentation(pred: Any, volume: Any, model_name: str, out: Path, used: set[str]) -> str:
    """The label map on the scan's own grid as ``OUT/<scan>_<model>_labels.nii.gz``; its path."""
    from ..io import output_stem, safe_name, save

    stem = safe_name(f"{output_stem(volume)}_{model_name}_labels")
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return str(save(pred.segmentation, out / f"{name}.nii.gz"))


def cmd_predict(args: argparse.Namespace) -> int:
    from ..models import ModelError, predict, resolve_model

    out = _out_dir(args.out, "--out") if args.out else None
    volumes = _load(args.scan)
    model = resolve_model(args.model, spec=args.spec)
    if out is not None and model.spec.task != "segmentation":
        raise CliError(f"--out writes a label map; model '{model.spec.name}' is a {model.spec.task} model")
    used: set[str] = set()
    results = []
    bar = _Bar(_progress_on(args), "predict", "volume")
    bar(0, len(volumes))
    for i, v in enumerate(volumes):
        try:
            pred = predict(v, model)
        except ModelError as exc:
            bar.close()
            raise CliError(f"{v.source or args.scan}: {exc}") from None
        bar(i + 1, len(volumes))
        if i + 1 == len(volumes):
            bar.close()
        _warn(getattr(pred, "warnings", []))
        entry = {"volume": v.name, "case_id": v.case_id, **pred.to_dict(), "model_sha256": model.sha256}
        if model.spec.task == "segmentation":
            entry["voxel_volume_ml"] = v.geometry.voxel_volume_ml
        if out is not None:
            entry["segmentation"] = _write_segmentation(pred, v, model.spec.name, out, used)
            if not args.json:
                print(f"    label map: {entry['segmentation']}")
        results.append(entry)
        if not args.json:
            _print_prediction(pred, v.name, model.spec.name)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from ..explain import list_methods

    methods = list_methods()
    model = None
    if args.model:
        from ..models import resolve_model

        model = resolve_model(args.model)
    why = {m.name: (m.unavailable_for(model) if model is not None else None) for m in methods}
    if args.json:
        rows = [m.summary() for m in methods]
        if model is not None:
            for row in rows:
                row["available"], row["unavailable_because"] = why[row["name"]] is None, why[row["name"]]
        print(json.dumps(rows, indent=2))
        return 0
    for m in methods:
        sign = "signed" if m.signed else "positive"
        line = f"{m.name:22s} {m.family:17s} {sign:9s} {', '.join(m.elements)}"
        print(line if why[m.name] is None else f"{line}   [not for this model: {why[m.name]}]")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``models``, ``predict`` and ``methods`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "models", help="list built-in and entry-point models, or describe the models given (loaded)"
    )
    p.add_argument(
        "model",
        nargs="*",
        metavar="MODEL",
        help="a model name, spec, weights file, MONAI bundle folder, .pt2 or .onnx: its name, task, classes",
    )
    p.add_argument(
        "--json", action="store_true", help="print a list of {name, task, classes, prototype, ...}"
    )
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("predict", help="run a model on SCAN: class probabilities or segmented volume in mL")
    p.add_argument("scan")
    p.add_argument(
        "--model", required=True, metavar="NAME_OR_PATH", help="a model name, a spec file or a weights file"
    )
    p.add_argument("--spec", default=None, help="spec (YAML/JSON) for a weights file")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="segmentation: write each label map (the scan's own grid) as DIR/<scan>_<model>_labels.nii.gz",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print {volume, classes, volumes_ml (voxels x voxel_volume_ml, on the scan's grid), ...}",
    )
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("methods", help="list attribution methods (family, elements served, signedness)")
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_PATH",
        help="also say which methods can explain this model (e.g. not the ones that override nn.ReLU "
        "on a torch.export program)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a list of {name, family, elements, signed, ...}"
    )
    p.set_defaults(func=cmd_methods)
