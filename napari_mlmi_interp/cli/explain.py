"""``explain``: one model, one method, one scan -> a map in the scan's geometry + provenance JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..io import Volume, binary_mask, load, output_stem, safe_name, save
from ._common import QUIET_HELP, CliError, _Bar, _load, _out_dir, _progress_on, _warn
from ._evidence import add_evidence_options, explain_evidence, print_evidence
from ._params import check_params, parse_params

THRESHOLD_HINT = "; give --roi-threshold T to use the image > T as the mask"


def _first_volume(path: str) -> Volume:
    """The first volume found at ``path``; saying so on stderr when there are several."""
    volumes = _load(path)
    if len(volumes) > 1:
        print(
            f"mlmi-interp: {len(volumes)} volumes found; explaining the first, '{volumes[0].name}'",
            file=sys.stderr,
        )
    return volumes[0]


def _mask_on_grid(path: str, volume: Volume, what: str, threshold: float | None, hint: str) -> np.ndarray:
    """The mask file at ``path`` as booleans on ``volume``'s grid (binary, or > ``threshold``)."""
    (mask,) = load(path)[:1]
    if not mask.geometry.same_grid(volume.geometry, atol_mm=1e-3):
        raise CliError(f"{path}: the {what} mask is not on the scan's grid (shape or position differs)")
    return binary_mask(mask, threshold=threshold, what=what, path=path, hint=hint)


def _label_map_roi(args: argparse.Namespace, model: Any, volume: Volume) -> np.ndarray:
    """The voxels of ``--roi-label`` (else ``--target``) in ``--roi-labels LABELMAP`` (the scan's grid)."""
    from ..explain.targets import label_mask

    label = args.roi_label if args.roi_label is not None else args.target
    if label is None:
        raise CliError("--roi-labels LABELMAP needs --roi-label NAME (or --target NAME): which label")
    (labels,) = load(args.roi_labels)[:1]
    if not labels.geometry.same_grid(volume.geometry, atol_mm=1e-3):
        raise CliError(
            f"{args.roi_labels}: the label map is not on the scan's grid (shape or position differs)"
        )
    values = np.asarray(labels.array)
    if not np.array_equal(values, np.round(values)):
        raise CliError(
            f"{args.roi_labels}: --roi-labels must be a label map (whole numbers), got other values"
        )
    return label_mask(values.astype(np.int64), label, list(model.spec.classes), what="ROI")


def _check_roi_options(args: argparse.Namespace, model: Any) -> None:
    """``--roi``, ``--roi-label`` and ``--roi-labels``: segmentation only, and one ROI at a time."""
    given = [flag for flag, v in (("--roi", args.roi), ("--roi-label", args.roi_label)) if v is not None]
    given += ["--roi-labels"] if args.roi_labels else []
    if given and model.spec.task != "segmentation":
        raise CliError(
            f"{given[0]} must be used with a segmentation model, got the {model.spec.task} model "
            f"'{model.spec.name}' (to occlude only around a region, use --method occlusion --region MASK)"
        )
    if args.roi and len(given) > 1:
        raise CliError(
            "give one ROI: --roi MASK, or --roi-label NAME (the model's own segmentation of that "
            "class, or that label of --roi-labels LABELMAP)"
        )


def _masks(
    args: argparse.Namespace, method: Any, model: Any, volume: Volume
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(roi, region)`` from ``--roi`` or ``--roi-labels``, and ``--region``; checked against the model."""
    _check_roi_options(args, model)
    if args.roi_threshold is not None and not (args.roi or args.region):
        raise CliError("--roi-threshold must come with --roi MASK or --region MASK")
    if args.region and method.name != "occlusion":
        raise CliError(f"--region must be used with --method occlusion, got --method {method.name}")
    roi = region = None
    if args.roi:
        roi = _mask_on_grid(args.roi, volume, "ROI", args.roi_threshold, THRESHOLD_HINT)
    elif args.roi_labels:
        roi = _label_map_roi(args, model, volume)
    if args.region:
        region = _mask_on_grid(args.region, volume, "region", args.roi_threshold, THRESHOLD_HINT)
    return roi, region


def _run(args: argparse.Namespace, volume: Volume, model: Any, method: Any, **inputs: Any) -> Any:
    """The explanation, with the cache (``--cache``) and a progress bar (terminal only).

    ``--roi-label`` without a label map: the ROI is the model's own segmentation of that
    class; with one, it was read into the ``roi`` mask. Either way it is the default target.
    """
    from ..explain import explain

    cache = None
    if args.cache:
        from ..explain import ResultCache

        cache = ResultCache(args.cache)
    bar = _Bar(_progress_on(args), method.name, "sample")
    try:
        target = args.target if args.target is not None else args.roi_label
        roi_label = args.roi_label if inputs.get("roi") is None else None
        return explain(
            volume,
            model,
            method.name,
            target=target,
            roi_label=roi_label,
            cache=cache,
            progress=bar,
            device=args.device,
            **inputs,
        )
    finally:
        bar.close()


def _say_what_was_explained(args: argparse.Namespace, model: Any, result: Any, roi: Any) -> None:
    """On stderr: the class chosen for a segmentation without ``--target``, then every warning."""
    if model.spec.task == "segmentation" and args.target is None:
        if args.roi_labels:
            where = f"inside its label in {Path(args.roi_labels).name}"
        elif roi is not None:
            where = "inside the given mask"
        else:
            where = "inside the model's own segmentation of it"
        print(
            f"mlmi-interp: no --target: explaining class '{result.target['name']}' "
            f"(index {result.target.get('class_index')}) {where}",
            file=sys.stderr,
        )
    _warn(getattr(result.prediction, "warnings", []))
    _warn(result.warnings)


def _write(out: Path, volume: Volume, model: Any, result: Any) -> tuple[Path, Path, dict[str, Any]]:
    """The native map (NIfTI) and its provenance (JSON) in ``out``: their paths and the provenance."""
    # the scan's own name may be a patient's (DOE_JANE_19700101.nii.gz): never part of an output
    stem = safe_name(f"{output_stem(volume)}_{model.spec.name}_{result.method}_{result.target['name']}")
    map_path = save(result.native, out / f"{stem}.nii.gz")
    prov_path = out / f"{stem}.json"
    return map_path, prov_path, _write_provenance(prov_path, volume, result, map_path)


def _write_provenance(prov_path: Path, volume: Volume, result: Any, map_path: Path) -> dict[str, Any]:
    provenance = {**result.summary(), "scan": volume.case_id, "map": str(map_path)}
    prov_path.write_text(json.dumps(provenance, indent=2))
    return provenance


def _said(prediction: Any) -> Any:
    """The prediction in a word: the label, the volumes (mL), or that none was computed."""
    if not prediction.computed:
        return "not computed (the method made no pass on the unperturbed scan)"
    return prediction.label or prediction.volumes_ml


def _print_result(
    as_json: bool, result: Any, map_path: Path, prov_path: Path, provenance: dict, evidence: Any = None
) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "map": str(map_path),
                    "provenance": str(prov_path),
                    "prediction": result.prediction.to_dict(),
                    "target": result.target,
                    "peak_lps_mm": provenance["peak_lps_mm"],
                    **({"evidence": evidence} if evidence is not None else {}),
                }
            )
        )
    else:
        print(f"map:        {map_path}")
        print(f"provenance: {prov_path}")
        print(f"prediction: {_said(result.prediction)}")
        print(f"peak (LPS mm): {provenance['peak_lps_mm']}")
        if evidence is not None:
            print_evidence(evidence)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import get_method
    from ..models import resolve_model

    out = _out_dir(args.out, "--out")
    method = get_method(args.method)
    params = parse_params(args.param)
    check_params(method, params)
    volume = _first_volume(args.scan)
    model = resolve_model(args.model, spec=args.spec)
    roi, region = _masks(args, method, model, volume)
    result = _run(args, volume, model, method, roi=roi, region=region, params=params)
    _say_what_was_explained(args, model, result, roi)
    # the map first: minutes of model evidence that fail or are stopped do not lose it
    map_path, prov_path, provenance = _write(out, volume, model, result)
    evidence = explain_evidence(args, model, volume, result)  # --evidence (None without)
    if evidence is not None:  # the provenance again, with the evidence
        provenance = _write_provenance(prov_path, volume, result, map_path)
    _print_result(args.json, result, map_path, prov_path, provenance, evidence)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``explain`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "explain", help="attribution map of a model's decision on SCAN, in the scan's geometry"
    )
    p.add_argument("scan")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH")
    p.add_argument("--spec", default=None)
    p.add_argument("--method", required=True)
    p.add_argument(
        "--target",
        default=None,
        help="class name (case-insensitive; a unique prefix will do) or index (default: the predicted "
        "class; segmentation: the --roi-label class, else class 1)",
    )
    p.add_argument(
        "--roi",
        default=None,
        metavar="MASK",
        help="segmentation only: explain the --target class inside MASK (a binary mask on the scan's grid)",
    )
    p.add_argument(
        "--roi-label",
        default=None,
        metavar="NAME",
        help="segmentation only: the ROI is this class (name or index) in the model's own segmentation "
        "of SCAN (one prediction), or in --roi-labels; also the default --target",
    )
    p.add_argument(
        "--roi-labels",
        default=None,
        metavar="LABELMAP",
        help="segmentation only: a label map on the scan's grid whose values index the model's classes "
        "(e.g. written by 'predict --out'); the ROI is its --roi-label (else --target) voxels",
    )
    p.add_argument(
        "--region",
        default=None,
        metavar="MASK",
        help="occlusion only: occlude only around MASK (faster when the question is about one region)",
    )
    p.add_argument(
        "--roi-threshold",
        type=float,
        default=None,
        metavar="T",
        help="use the image > T as the --roi / --region mask (for a mask that is not binary)",
    )
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    p.add_argument(
        "--device",
        default="auto",
        help="where the method runs: auto (a CUDA GPU when present, else the CPU), cpu, cuda, cuda:N",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--cache", metavar="DIR", default=None, help="reuse and store results in this cache folder"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    add_evidence_options(p)
    p.set_defaults(func=cmd_explain)
