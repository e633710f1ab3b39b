"""Reader studies: ``ratings export`` (the ratings of a study file as CSV and/or JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import CliError


def cmd_ratings(args: argparse.Namespace) -> int:
    from ..store import StudyStore

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


def add_parser(sub: Any) -> None:
    """Register ``ratings`` (with its action ``export``) on the subcommand parsers ``sub``."""
    p = sub.add_parser("ratings", help="export the ratings of a study file")
    rsub = p.add_subparsers(dest="ratings_command", required=True, metavar="ACTION")
    e = rsub.add_parser("export", help="current ratings and actions as CSV; everything as JSON")
    e.add_argument("db", metavar="DB")
    e.add_argument("--csv", default=None, metavar="OUT")
    e.add_argument("--json", dest="json_out", default=None, metavar="OUT")
    e.set_defaults(func=cmd_ratings)
