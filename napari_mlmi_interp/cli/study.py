"""Reader studies: ``ratings export|import`` and ``study merge|analyze``.

- ``ratings export DB [--csv OUT] [--json OUT] [--sr DIR --dicom FOLDER [...] [--keep-identity]]``
- ``ratings import CSV --study DB``
- ``study merge OUT.sqlite A.sqlite B.sqlite ...``
- ``study analyze DB [DB ...] [--json] [--html OUT] [--bootstrap N] [--seed S]
  [--kappa-weights linear|quadratic|none] [--repeat-gap-h H]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import CliError


def _study_file(path: str) -> Path:
    db = Path(path)
    if not db.is_file():
        raise CliError(f"{db}: no such study file")
    return db


def cmd_ratings(args: argparse.Namespace) -> int:
    from ..store import StudyStore

    db = _study_file(args.db)
    if not (args.csv or args.json_out or args.sr):
        raise CliError("say where to export: --csv OUT, --json OUT and/or --sr DIR")
    if (args.dicom or args.keep_identity) and not args.sr:
        raise CliError("--dicom and --keep-identity go with --sr")
    if args.sr and not args.dicom:
        raise CliError(
            "--sr needs --dicom FOLDER: the study file keeps no DICOM UIDs (cases are pseudonyms), "
            "the reports reference the source series found there"
        )
    with StudyStore(db) as store:
        rows = store.rows()
        if args.csv:
            print(f"ratings CSV: {store.export_csv(args.csv)} ({len(rows)} rows)")
        if args.json_out:
            print(f"ratings JSON: {store.export_json(args.json_out)}")
        if args.sr:
            from ..study.sr import write_structured_reports

            done = write_structured_reports(
                store, args.sr, dicom=args.dicom, keep_identity=args.keep_identity
            )
            print(f"DICOM SR: {args.sr} ({done.summary()})")
    return 0


def cmd_ratings_import(args: argparse.Namespace) -> int:
    from ..store import StudyStore
    from ..store.ratings_csv import import_ratings_csv

    csv_path = Path(args.csv_file)
    if not csv_path.is_file():
        raise CliError(f"{csv_path}: no such file")
    with StudyStore(args.study) as store:
        print(f"{args.study}: {import_ratings_csv(csv_path, store).summary()}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from ..store.merge import merge_studies

    sources = [_study_file(p) for p in args.sources]
    report = merge_studies(args.out, sources)
    print(report.summary())
    print(f"merged into {args.out}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..study import analyze_study
    from ..study.report import title, write_report

    paths = [_study_file(p) for p in args.dbs]
    if args.bootstrap < 0:
        raise CliError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    result = analyze_study(
        paths,
        n_boot=args.bootstrap,
        seed=args.seed,
        kappa_weights=args.kappa_weights,
        repeat_gap_s=args.repeat_gap_h * 3600.0,
    )
    if args.html:
        print(f"report: {write_report(result, args.html, name=paths[0].stem)}")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    c = result["counts"]
    print(f"{c['runs']} runs, {c['cases']} cases, readers: {', '.join(c['readers'])}; {c['ratings']} ratings")
    for reader, n in c["same_name"].items():
        print(f"warning: reader '{reader}' rated {n} runs in more than one file", file=sys.stderr)
    print("agreement (Krippendorff's alpha, ordinal, 95 % interval):")
    for element, a in result["agreement"].items():
        if a["krippendorff_alpha"] is None:
            print(f"  {title(element)}: n/a ({a.get('note', '')})")
            continue
        ci = a["ci95"]
        ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[n/a]"
        print(
            f"  {title(element)}: {a['krippendorff_alpha']:.2f} {ci_text}, "
            f"{a['readers']} readers, {a['items']} items"
        )
    print("league (mean rating over the elements rated):")
    for r in result["league"]:
        means = [m["mean"] for m in r["elements"].values() if m["mean"] is not None]
        mean = f"{sum(means) / len(means):.2f}" if means else "n/a"
        print(f"  {r['model']} · {r['method']}: {mean} ({r['runs']} runs)")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``ratings`` (export, import) and ``study`` (merge, analyze)."""
    p = sub.add_parser("ratings", help="export or import the ratings of a study file")
    rsub = p.add_subparsers(dest="ratings_command", required=True, metavar="ACTION")
    e = rsub.add_parser("export", help="ratings as CSV, everything as JSON, DICOM Structured Reports")
    e.add_argument("db", metavar="DB")
    e.add_argument("--csv", default=None, metavar="OUT")
    e.add_argument("--json", dest="json_out", default=None, metavar="OUT")
    e.add_argument("--sr", default=None, metavar="DIR", help="one DICOM SR per rated run and reader")
    e.add_argument(
        "--dicom",
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="the source DICOM of the rated scans (for --sr: the series the reports reference)",
    )
    e.add_argument(
        "--keep-identity",
        action="store_true",
        help="copy the source's patient and study attributes into the SRs (default: pseudonymised)",
    )
    e.set_defaults(func=cmd_ratings)
    i = rsub.add_parser("import", help="ratings from a CSV (the columns 'ratings export' writes)")
    i.add_argument("csv_file", metavar="CSV")
    i.add_argument("--study", required=True, metavar="DB", help="the study file to import into")
    i.set_defaults(func=cmd_ratings_import)

    s = sub.add_parser("study", help="merge readers' study files; analyse a reader study")
    ssub = s.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    m = ssub.add_parser("merge", help="merge study files without losing or duplicating a rating")
    m.add_argument("out", metavar="OUT")
    m.add_argument("sources", nargs="+", metavar="DB")
    m.set_defaults(func=cmd_merge)
    a = ssub.add_parser("analyze", help="agreement, ratings vs figures, league table; HTML report")
    a.add_argument("dbs", nargs="+", metavar="DB")
    a.add_argument("--json", action="store_true", help="print the whole analysis as JSON")
    a.add_argument("--html", default=None, metavar="OUT", help="write the report with its plots")
    a.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples per interval")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--kappa-weights", choices=("linear", "quadratic", "none"), default="linear")
    a.add_argument(
        "--repeat-gap-h",
        type=float,
        default=1.0,
        metavar="H",
        help="two ratings of a run by one reader this far apart are a repeat (intra-reader)",
    )
    a.set_defaults(func=cmd_analyze)
