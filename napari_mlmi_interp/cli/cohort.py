"""Cohorts: ``batch`` (every scan of a folder or manifest, on Dask workers) and ``report`` (HTML)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ._common import QUIET_HELP, CliError, _Bar, _out_dir, _progress_on, add_figure_settings
from ._params import check_params, parse_params


def _params_per_method(methods: list[str], items: list[str]) -> dict[str, dict[str, Any]]:
    """Each ``--param`` given to the methods that have it; a name no method has is an error."""
    from ..explain import get_method

    given = parse_params(items)
    params = {}
    for name in methods:
        method = get_method(name)
        params[name] = {k: v for k, v in given.items() if k in method.params}
        check_params(method, params[name])
    unused = sorted(set(given) - {k for p in params.values() for k in p})
    if unused:
        raise CliError(f"no chosen method has the parameter(s) {', '.join(unused)}")
    return params


def _progress(bar: _Bar, failed: list[dict[str, Any]]) -> Callable[[int, int, dict[str, Any]], None]:
    """The batch's per-case callback: the bar (with the failures so far) and each case's warnings."""

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

    return progress


def _summary(result: Any, anonymise: bool) -> dict[str, Any]:
    """What ``batch`` prints: counts, failures (no input paths with ``anonymise``), outputs, time."""
    return {
        "cases": len(result.records),
        "done": sum(r.get("status") == "ok" for r in result.records),
        "skipped": len(result.skipped),
        "failed": [
            {"case": r["case"], "input": None if anonymise else r.get("input"), "error": r.get("error")}
            for r in result.failed
        ],
        "summary_csv": str(result.summary_csv),
        "summary_parquet": str(result.summary_parquet) if result.summary_parquet else None,
        "seconds": round(result.seconds, 2),
        "workers": result.workers,
    }


def cmd_batch(args: argparse.Namespace) -> int:
    from ..cohort import run_batch

    out = _out_dir(args.out, "--out")
    params = _params_per_method(args.method, args.param)
    bar = _Bar(_progress_on(args), "batch", "case")
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
            progress=_progress(bar, []),
            evidence=args.evidence,
            store=args.store,
        )
    finally:
        bar.close()
    summary = _summary(result, args.anonymise)
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
    from ..cohort import write_report

    path = write_report(args.result_dir, args.out, study=args.study, max_cases=args.max_cases)
    print(f"report: {path}")
    return 0


def _add_batch_parser(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="explain every scan of a folder or CSV manifest on Dask workers: NIfTI maps in each "
        "case's geometry, metrics, a summary CSV/Parquet",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="a folder of scans, a CSV manifest (scan[, roi, label]; a scan may be a DICOMweb URL), "
        "or one DICOMweb study or series URL",
    )
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH")
    p.add_argument("--method", required=True, action="append", help="repeat for several methods")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--masks", default=None, metavar="DIR", help="ROI masks matched to scans by file name")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local Dask workers, one core each (default 2)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="use a running Dask scheduler")
    p.add_argument("--target", default=None, help="class name or index (default: the predicted class)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    add_figure_settings(p, "for the metrics and the DICOM SEG")
    p.add_argument(
        "--evidence",
        nargs="?",
        const="full",
        default=None,
        choices=("full", "quick", "brief"),
        help="also the model figures of every map (deletion/insertion, randomisation, infidelity, "
        "score drop, augmentation spread; a segmenter's on its ROI score): minutes per map",
    )
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
        "--store",
        nargs="?",
        const="source",
        default=None,
        metavar="DICOMWEB_URL",
        help="send the DICOM objects (implies --dicom) into each case's source study by STOW-RS: to the "
        "DICOMweb server the case was read from, or to the server given, with the study's patient identity "
        "(they are filed beside its images); a case is done only when "
        "every object is stored (credentials: MLMI_DICOMWEB_TOKEN or _USER/_PASSWORD, or the config file)",
    )
    p.add_argument(
        "--anonymise",
        action="store_true",
        help="no input paths anywhere, not even in the summary's input column",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_batch)


def add_parser(sub: Any) -> None:
    """Register ``batch`` and ``report`` on the subcommand parsers ``sub``."""
    _add_batch_parser(sub)
    p = sub.add_parser("report", help="an HTML report of a batch: key slices, evidence, ratings, model card")
    p.add_argument("result_dir", metavar="RESULT_DIR", help="the --out folder of mlmi-interp batch")
    p.add_argument("--out", required=True, metavar="HTML")
    p.add_argument("--study", default=None, metavar="DB", help="show the ratings in this study file")
    p.add_argument("--max-cases", type=int, default=None, help="cases shown in detail (default all)")
    p.set_defaults(func=cmd_report)
