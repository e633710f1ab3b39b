"""``mlmi-interp``: the headless command line.

Every subcommand turns bad input into one line on stderr (``mlmi-interp: error: ...``)
and exit status 2; ``--debug`` shows the traceback instead. Warnings (what was corrected or
skipped while loading, what a careful user must know about a prediction or a map) are
``warning: ...`` lines on stderr; progress bars go to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import MlmiError
from .io import (
    LoadError,
    LoadWarning,
    Volume,
    binary_mask,
    load,
    load_warnings,
    output_stem,
    safe_name,
    save,
)
from .store import StoreError

__all__ = ["main"]


class CliError(MlmiError):
    """A user-facing error: printed as one line, exit status 2."""


def _warn(messages: Any) -> None:
    """Each message as one ``warning: ...`` line on stderr."""
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def _load(path: str) -> list[Volume]:
    """:func:`load`, with every load warning said once (per series; a folder's note once)."""
    volumes = load(path)
    _warn(load_warnings(volumes))
    return volumes


def _out_dir(path: str, flag: str) -> Path:
    """``path`` as an output folder; an existing file there is a clear error, not Errno 17."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CliError(f"{flag} must be a folder, got the existing file {out}")
    return out


def _progress_on(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal only (stderr a TTY), and not with --quiet."""
    if getattr(args, "quiet", False):
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


class _Bar:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (nothing when off)."""

    def __init__(self, on: bool, desc: str, unit: str) -> None:
        self.on, self.desc, self.unit = on, desc, unit
        self.bar: Any = None

    def __call__(self, done: int, total: int, postfix: str | None = None) -> None:
        if not self.on:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        if total != self.bar.total:
            self.bar.total = total
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(values: Any, digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in np.ravel(values)) + ")"


def cmd_info(args: argparse.Namespace) -> int:
    volumes = load(args.path)
    if args.json:
        print(json.dumps({"volumes": [v.describe() for v in volumes]}, indent=2))
        return 0
    for i, v in enumerate(volumes):
        g = v.geometry
        print(f"[{i}] {v.name}")
        print(f"    modality      {v.modality}    case id {v.case_id}")
        print(f"    shape (z,y,x) {g.shape}    dtype {v.array.dtype}    {v.units or 'arbitrary units'}")
        print(f"    spacing mm    {_fmt(g.spacing, 4)}  (z, y, x)")
        print(f"    origin LPS mm {_fmt(g.origin)}")
        plane = g.acquisition_plane() + (", oblique" if g.is_oblique() else "")
        print(f"    orientation   {g.orientation_code()} ({plane})")
        for row, label in zip(g.direction, "LPS", strict=True):
            print(f"    direction {label}   {_fmt(row, 6)}")
        print("    index_to_lps")
        for row in g.index_to_lps:
            print(f"        {_fmt(row, 6)}")
        for w in v.warnings:
            print(f"    warning: {w}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    out_dir = _out_dir(args.out_dir, "OUT_DIR")
    volumes = _load(args.input)
    used: set[str] = set()
    for v in volumes:
        stem = output_stem(v)
        name, k = stem, 2
        while name in used:
            name, k = f"{stem}_{k}", k + 1
        used.add(name)
        print(save(v, out_dir / f"{name}.nii.gz"))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .sample import write_sample

    if args.shortcut:
        from .synthetic import make_shortcut_case

        case = make_shortcut_case()
        out = Path(args.out_dir)
        paths = {
            "scan": str(save(case.scan, out / "shortcut_case.nii.gz")),
            "mask": str(save(case.mask, out / "shortcut_case_lesion_mask.nii.gz")),
        }
    else:
        paths = write_sample(args.out_dir, seed=args.seed)
    if args.json:
        print(json.dumps(paths))
    else:
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    return 0


def _need_display(screenshot: str | None) -> str | None:
    from ._display import ensure_display, missing_qt_binding

    problem = missing_qt_binding()
    if problem:
        raise CliError(problem)
    display = ensure_display()
    if display is None:
        raise CliError(
            "no display: set $DISPLAY, or install Xvfb (apt-get install xvfb) so a virtual one can start"
        )
    return screenshot


def cmd_view(args: argparse.Namespace) -> int:
    volumes = _load(args.path)
    headless = not os.environ.get("DISPLAY")
    screenshot = args.screenshot or ("mlmi-interp-view.png" if headless else None)
    _need_display(screenshot)
    from ._viewer import show_volumes

    out = show_volumes([(v, {}) for v in volumes], plane=args.plane, screenshot=screenshot)
    if out:
        print(f"screenshot: {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .sample import make_sample

    headless = not os.environ.get("DISPLAY")
    out_dir = Path(args.out)
    screenshot = args.screenshot or (str(out_dir / "demo.png") if headless else None)
    sample = make_sample()
    files = {
        "scan": str(save(sample.scan, out_dir / "sample_brain_t1.nii.gz")),
        "mask": str(save(sample.mask, out_dir / "sample_brain_lesion_mask.nii.gz")),
        "lesion_volume_ml": round(float(sample.mask.array.sum()) * sample.scan.geometry.voxel_volume_ml, 3),
    }
    _need_display(screenshot)
    from ._widgets.demo import run_demo

    summary = run_demo(out_dir, screenshot=screenshot)
    results = {**files, **summary}
    (out_dir / "demo_results.json").write_text(json.dumps(results, indent=2))
    short = {
        **files,
        "lesion_centre_lps_mm": summary["lesion_centre_lps_mm"],
        "explanations": [
            {
                "method": e["method"],
                "prediction": e["prediction"].get("predicted"),
                "peak_lps_mm": e["peak_lps_mm"],
                "peak_to_lesion_mm": e["peak_to_lesion_mm"],
            }
            for e in summary["explanations"]
        ],
        "screenshots": summary.get("screenshots", {}),
        "results": str(out_dir / "demo_results.json"),
    }
    print(json.dumps(short, indent=2))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import available_models

    specs = available_models()
    if args.json:
        print(json.dumps([s.summary() for s in specs], indent=2))
        return 0
    if not specs:
        print("no models (built-in zoo empty, no entry points)")
    for s in specs:
        kind = "prototype " if s.prototype else ""
        print(f"{s.name:28s} {kind}{s.task:15s} classes: {', '.join(s.classes)}   [{s.source}]")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .models import ModelError, predict, resolve_model

    volumes = _load(args.scan)
    model = resolve_model(args.model, spec=args.spec)
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
        results.append(entry)
        if not args.json:
            print(f"{v.name}  [{model.spec.name}]")
            if pred.probabilities is not None:
                for c, p in zip(pred.classes, pred.probabilities, strict=True):
                    print(f"    {c:20s} {p:.4f}{'  <- predicted' if c == pred.label else ''}")
            else:
                for c, ml in pred.volumes_ml.items():
                    print(f"    {c:20s} {ml:.3f} mL")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .explain import list_methods

    methods = list_methods()
    if args.json:
        print(json.dumps([m.summary() for m in methods], indent=2))
        return 0
    for m in methods:
        sign = "signed" if m.signed else "positive"
        print(f"{m.name:22s} {m.family:17s} {sign:9s} {', '.join(m.elements)}")
    return 0


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--param must be NAME=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _check_params(method: Any, params: dict[str, Any]) -> None:
    """Each value of the type of the method's default for it, or an error naming it."""
    for key, value in params.items():
        if key not in method.params:
            continue  # unknown names: the engine's error lists the method's parameters
        default = method.params[key]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif default == "auto":
            ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
            kind = "a positive integer or 'auto'"
        else:
            continue
        if not ok:
            raise CliError(
                f"--param {key} ({method.name}) must be {kind} (default {json.dumps(default)}), "
                f"got {json.dumps(value)}"
            )


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain, get_method
    from .models import resolve_model

    out = _out_dir(args.out, "--out")
    method = get_method(args.method)
    params = _parse_params(args.param)
    _check_params(method, params)
    volumes = _load(args.scan)
    if len(volumes) > 1:
        print(
            f"mlmi-interp: {len(volumes)} volumes found; explaining the first, '{volumes[0].name}'",
            file=sys.stderr,
        )
    volume = volumes[0]
    model = resolve_model(args.model, spec=args.spec)
    segmentation = model.spec.task == "segmentation"
    if args.roi and not segmentation:
        raise CliError(
            f"--roi must be used with a segmentation model, got the {model.spec.task} model "
            f"'{model.spec.name}' (to occlude only around a region, use --method occlusion --region MASK)"
        )
    if args.roi_threshold is not None and not (args.roi or args.region):
        raise CliError("--roi-threshold must come with --roi MASK or --region MASK")
    if args.region and method.name != "occlusion":
        raise CliError(f"--region must be used with --method occlusion, got --method {method.name}")
    threshold_hint = "; give --roi-threshold T to use the image > T as the mask"
    roi = region = None
    if args.roi:
        roi = _mask_on_grid(args.roi, volume, "ROI", args.roi_threshold, threshold_hint)
    if args.region:
        region = _mask_on_grid(args.region, volume, "region", args.roi_threshold, threshold_hint)
    target: int | str | None = args.target
    cache = None
    if args.cache:
        from .explain import ResultCache

        cache = ResultCache(args.cache)
    bar = _Bar(_progress_on(args), method.name, "sample")
    try:
        result = explain(
            volume,
            model,
            method.name,
            target=target,
            roi=roi,
            region=region,
            params=params,
            cache=cache,
            progress=bar,
        )
    finally:
        bar.close()
    if segmentation and target is None:
        where = "inside the given mask" if roi is not None else "inside the model's own segmentation of it"
        print(
            f"mlmi-interp: no --target: explaining class '{result.target['name']}' "
            f"(index {result.target.get('class_index')}) {where}",
            file=sys.stderr,
        )
    _warn(getattr(result.prediction, "warnings", []))
    _warn(result.warnings)
    # the scan's own name may be a patient's (DOE_JANE_19700101.nii.gz): never part of an output
    stem = safe_name(f"{output_stem(volume)}_{model.spec.name}_{result.method}_{result.target['name']}")
    map_path = save(result.native, out / f"{stem}.nii.gz")
    provenance = {**result.summary(), "scan": volume.case_id, "map": str(map_path)}
    prov_path = out / f"{stem}.json"
    prov_path.write_text(json.dumps(provenance, indent=2))
    if args.json:
        print(
            json.dumps(
                {
                    "map": str(map_path),
                    "provenance": str(prov_path),
                    "prediction": result.prediction.to_dict(),
                    "peak_lps_mm": provenance["peak_lps_mm"],
                }
            )
        )
    else:
        print(f"map:        {map_path}")
        print(f"provenance: {prov_path}")
        print(f"prediction: {result.prediction.label or result.prediction.volumes_ml}")
        print(f"peak (LPS mm): {provenance['peak_lps_mm']}")
    return 0


def _mask_on_grid(path: str, volume: Volume, what: str, threshold: float | None, hint: str) -> np.ndarray:
    """The mask file at ``path`` as booleans on ``volume``'s grid (binary, or > ``threshold``)."""
    (mask,) = load(path)[:1]
    if not mask.geometry.same_grid(volume.geometry, atol_mm=1e-3):
        raise CliError(f"{path}: the {what} mask is not on the scan's grid (shape or position differs)")
    return binary_mask(mask, threshold=threshold, what=what, path=path, hint=hint)


def _roi_file(path: str, threshold: float | None, tmp: str) -> str:
    """The ROI file to score against: ``path`` when it is a binary mask, else refused.

    With ``threshold``, the image > ``threshold`` is written as a mask in ``tmp`` instead.
    """
    volumes = load(path)
    if len(volumes) != 1:
        raise CliError(f"{path}: the ROI must be one volume, found {len(volumes)}")
    hint = "; give --roi-threshold T to use the image > T as the ROI"
    mask = binary_mask(volumes[0], threshold=threshold, what="ROI", path=path, hint=hint)
    if threshold is None:
        return path
    return str(save(volumes[0].with_array(mask.astype(np.uint8)), Path(tmp) / "roi.nii.gz"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .framework import ELEMENT_INFO, load_bands
    from .framework.files import evaluate_files, flat_figures

    if args.roi_threshold is not None and args.roi is None:
        raise CliError("--roi-threshold must come with --roi MASK")
    bands = load_bands(args.bands) if args.bands else None
    with tempfile.TemporaryDirectory(prefix="mlmi-roi-") as tmp:
        roi_path = _roi_file(args.roi, args.roi_threshold, tmp) if args.roi else None
        try:
            result, notes = evaluate_files(
                args.map,
                roi_path,
                scan_path=args.scan,
                labels_path=args.labels,
                percent=args.percent,
                tolerance_mm=args.tolerance_mm,
                bands=bands,
            )
        except ValueError as exc:  # name the user's ROI file, not the thresholded copy
            raise CliError(str(exc).replace(str(roi_path), str(args.roi))) from None
    if args.json:
        nested = result.to_dict()
        out = {
            **flat_figures(result),
            "by_element": {e: nested[e] for e in ELEMENT_INFO},
            "bands": nested["bands"],
            "settings": nested["settings"],
            "notes": notes,
        }
        print(json.dumps(out, indent=2))
        return 0
    for note in notes:
        print(f"note: {note}")
    for element, figures in result.by_element().items():
        if not figures:
            continue
        print(ELEMENT_INFO[element].title)
        for f in figures:
            band = f"[{f.band}]" if f.band not in ("info",) else ""
            print(f"    {f.label:28s} {f.text():40s} {band}")
            if f.note and f.value is not None:
                print(f"    {'':28s} ({f.note})")
    return 0


def cmd_ratings(args: argparse.Namespace) -> int:
    from .store import StudyStore

    db = Path(args.db)
    if not db.is_file():
        raise CliError(f"{db}: no such study file")
    if not (args.csv or args.json_out):
        raise CliError("say where to export: --csv OUT and/or --json OUT")
    with StudyStore(db) as store:
        rows = store.rows()
        if args.csv:
            print(f"ratings CSV: {store.export_csv(args.csv)} ({len(rows)} rows)")
        if args.json_out:
            print(f"ratings JSON: {store.export_json(args.json_out)}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .cohort import run_batch
    from .explain import get_method

    out = _out_dir(args.out, "--out")
    given = _parse_params(args.param)
    params = {}
    for name in args.method:
        method = get_method(name)
        params[name] = {k: v for k, v in given.items() if k in method.params}
        _check_params(method, params[name])
    unused = sorted(set(given) - {k for p in params.values() for k in p})
    if unused:
        raise CliError(f"no chosen method has the parameter(s) {', '.join(unused)}")
    failed: list[dict[str, Any]] = []
    bar = _Bar(_progress_on(args), "batch", "case")

    def progress(done: int, total: int, record: dict[str, Any]) -> None:
        if record.get("status") != "ok":
            failed.append(record)
        bar(done, total, f"{len(failed)} failed" if failed else None)
        if done == total:
            bar.close()
        # load warnings, once per case (and per series within it), as each case finishes
        for message in record.get("warnings", []):
            line = f"warning: {record.get('case_id') or record['case']}: {message}"
            if bar.bar is not None:
                bar.bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)

    try:
        result = run_batch(
            args.input,
            model=args.model,
            methods=args.method,
            out=str(out),
            masks=args.masks,
            workers=args.workers,
            scheduler=args.scheduler,
            target=args.target,
            params=params,
            percent=args.percent,
            tolerance_mm=args.tolerance_mm,
            dicom=args.dicom or args.dicom_keep_identity,
            keep_identity=args.dicom_keep_identity,
            anonymise=args.anonymise,
            progress=progress,
        )
    finally:
        bar.close()
    summary = {
        "cases": len(result.records),
        "done": sum(r.get("status") == "ok" for r in result.records),
        "skipped": len(result.skipped),
        "failed": [
            {"case": r["case"], "input": None if args.anonymise else r.get("input"), "error": r.get("error")}
            for r in result.failed
        ],
        "summary_csv": str(result.summary_csv),
        "summary_parquet": str(result.summary_parquet) if result.summary_parquet else None,
        "seconds": round(result.seconds, 2),
        "workers": result.workers,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['done']} of {summary['cases']} cases done ({summary['skipped']} skipped as done "
            f"before) in {summary['seconds']:.1f} s; summary: {summary['summary_csv']}"
        )
        for f in summary["failed"]:
            print(f"failed: {f['input'] or f['case']}: {f['error']}")
    return 1 if result.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .cohort import write_report

    path = write_report(args.result_dir, args.out, study=args.study, max_cases=args.max_cases)
    print(f"report: {path}")
    return 0


QUIET_HELP = "no progress bar (there is none when stderr is not a terminal)"


def _add_figure_settings(p: argparse.ArgumentParser, figure: Any, percent_use: str) -> None:
    """``--percent`` and ``--tolerance-mm``, defaulting to the shared figure settings."""
    p.add_argument(
        "--percent",
        type=float,
        default=figure.topk_percent,
        help=f"k of the top-k %% region {percent_use} (default {figure.topk_percent:g})",
    )
    p.add_argument(
        "--tolerance-mm",
        type=float,
        default=figure.tolerance_mm,
        help="pointing-game tolerance, also the peak-to-region pass limit "
        f"(default {figure.tolerance_mm:g} mm)",
    )


def build_parser() -> argparse.ArgumentParser:
    from .framework.settings import DEFAULT_SETTINGS as figure  # one top-k %, one tolerance

    parser = argparse.ArgumentParser(
        prog="mlmi-interp",
        description="Interpretability for medical-imaging ML: scans in physical space, in napari.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe every volume found at PATH (geometry in LPS mm)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help='print {"volumes": [...]}')
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="write every volume found at INPUT as OUT_DIR/<name>.nii.gz")
    p.add_argument("input")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("sample", help="write the sample brain scan and its lesion mask as NIfTI")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shortcut", action="store_true", help="the shortcut case (lesion + burned-in tag) instead"
    )
    p.add_argument("--json", action="store_true", help='print {"scan": PATH, "mask": PATH}')
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("models", help="list built-in and entry-point models")
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
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("methods", help="list attribution methods (family, elements served, signedness)")
    p.add_argument(
        "--json", action="store_true", help="print a list of {name, family, elements, signed, ...}"
    )
    p.set_defaults(func=cmd_methods)

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
        help="class name or index (default: the predicted class; segmentation: class 1)",
    )
    p.add_argument(
        "--roi",
        default=None,
        metavar="MASK",
        help="segmentation only: explain the --target class inside MASK (a binary mask on the scan's grid)",
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
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--cache", metavar="DIR", default=None, help="reuse and store results in this cache folder"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "evaluate",
        help="score an attribution map (NIfTI, any tool) against an ROI on the five elements' map figures",
    )
    p.add_argument("map", metavar="MAP")
    p.add_argument(
        "--roi",
        default=None,
        metavar="MASK",
        help="the true region, a binary mask (any grid; resampled by position)",
    )
    p.add_argument(
        "--roi-threshold",
        type=float,
        default=None,
        metavar="T",
        help="use the --roi image > T as the region (for a mask that is not binary)",
    )
    p.add_argument(
        "--scan", default=None, help="the scan, for intensity statistics inside the attributed region"
    )
    p.add_argument("--labels", default=None, help="an anatomical label map: attribution mass per structure")
    _add_figure_settings(p, figure, "(as in the sidebar and batch)")
    p.add_argument(
        "--bands", default=None, metavar="JSON", help="pass/warn thresholds overriding the defaults"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "batch",
        help="explain every scan of a folder or CSV manifest on Dask workers: NIfTI maps in each "
        "case's geometry, metrics, a summary CSV/Parquet",
    )
    p.add_argument("input", metavar="INPUT", help="a folder of scans or a CSV manifest (scan[, roi, label])")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH")
    p.add_argument("--method", required=True, action="append", help="repeat for several methods")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--masks", default=None, metavar="DIR", help="ROI masks matched to scans by file name")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local Dask workers, one core each (default 2)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="use a running Dask scheduler")
    p.add_argument("--target", default=None, help="class name or index (default: the predicted class)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    _add_figure_settings(p, figure, "for the metrics and the DICOM SEG")
    p.add_argument(
        "--dicom",
        action="store_true",
        help="DICOM cases: also write each map into the source study (derived series, Parametric Map, SEG), "
        "the patient pseudonymised",
    )
    p.add_argument(
        "--dicom-keep-identity",
        action="store_true",
        help="like --dicom, with the source's patient name, ID and birth date (for filing into a PACS)",
    )
    p.add_argument(
        "--anonymise",
        action="store_true",
        help="no input paths anywhere, not even in the summary's input column",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("report", help="an HTML report of a batch: key slices, evidence, ratings, model card")
    p.add_argument("result_dir", metavar="RESULT_DIR", help="the --out folder of mlmi-interp batch")
    p.add_argument("--out", required=True, metavar="HTML")
    p.add_argument("--study", default=None, metavar="DB", help="show the ratings in this study file")
    p.add_argument("--max-cases", type=int, default=None, help="cases shown in detail (default all)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ratings", help="export the ratings of a study file")
    rsub = p.add_subparsers(dest="ratings_command", required=True, metavar="ACTION")
    e = rsub.add_parser("export", help="current ratings and actions as CSV; everything as JSON")
    e.add_argument("db", metavar="DB")
    e.add_argument("--csv", default=None, metavar="OUT")
    e.add_argument("--json", dest="json_out", default=None, metavar="OUT")
    e.set_defaults(func=cmd_ratings)

    p = sub.add_parser("view", help="open PATH in napari (headless: write a screenshot)")
    p.add_argument("path")
    p.add_argument("--plane", choices=["axial", "coronal", "sagittal"], default=None)
    p.add_argument("--screenshot", metavar="PNG", default=None)
    p.set_defaults(func=cmd_view)

    p = sub.add_parser(
        "demo",
        help="sample scan, demo classifier, Grad-CAM and IG overlays, prototype panel in napari "
        "(headless: screenshots + results)",
    )
    p.add_argument("--screenshot", metavar="PNG", default=None)
    p.add_argument("--out", metavar="DIR", default="mlmi-interp-demo")
    p.set_defaults(func=cmd_demo)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``mlmi-interp methods | head -1``): end quietly.

    As the Python docs advise, stdout is pointed at devnull so that the interpreter's
    final flush does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured): nothing left to flush
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # volume.warnings already carry these; do not print them twice
            warnings.simplefilter("ignore", LoadWarning)
            # Captum's note that it switched gradients on for the input: noise to a CLI user
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler below
            return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (LoadError, CliError, StoreError, ValueError, OSError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"mlmi-interp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
