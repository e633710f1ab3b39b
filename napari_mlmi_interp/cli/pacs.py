"""PACS: ``pacs search`` (QIDO-RS: studies and series) and ``pacs store`` (STOW-RS of DICOM files).

A DICOMweb study or series URL is accepted wherever a path is (``info``, ``convert``,
``view``, ``explain``, ``batch``); these two commands find such URLs and send files back.
Credentials come from the environment or the config file, never from the command line
(:mod:`napari_mlmi_interp.io.dicomweb.auth`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import CliError


def _series_line(s: dict[str, Any]) -> str:
    number = "" if s.get("number") is None else f"#{s['number']}"
    instances = s.get("instances")
    count = f"{instances} instances" if instances is not None else "? instances"
    return f"    series {number:>4} {s.get('modality') or '??':3} {count:>14}  {s.get('description') or ''}"


def cmd_search(args: argparse.Namespace) -> int:
    from ..io.dicomweb import search

    studies = search(
        args.url,
        patient_id=args.patient_id,
        study_date=args.study_date,
        modality=args.modality,
        show_identity=args.show_identity,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps({"studies": studies}, indent=2))
        return 0
    if not studies:
        print("no study matches")
        return 0
    for study in studies:
        modalities = study.get("modalities") or ""
        if isinstance(modalities, list):
            modalities = "/".join(modalities)
        date = study.get("date") or "no date"
        print(f"study {date}  {modalities}  {study.get('description') or ''}")
        if args.show_identity:
            print(f"    patient {study.get('PatientName') or ''}  id {study.get('PatientID') or ''}")
        print(f"    {study['url']}")
        for s in study["series"]:
            print(_series_line(s))
            print(f"        {s['url']}")
    return 0


def _dicom_files(paths: list[str]) -> list[Path]:
    """Every file given, and every file under each folder given, that is DICOM."""
    from ..io import is_dicom_file

    files: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_dicom_file(f))
        elif p.is_file():
            if not is_dicom_file(p):
                raise CliError(f"{p}: not a DICOM file")
            files.append(p)
        else:
            raise CliError(f"{p}: no such file or folder")
    if not files:
        raise CliError("no DICOM files to store")
    return files


def cmd_store(args: argparse.Namespace) -> int:
    import pydicom

    from ..export import store_files

    files = _dicom_files(args.paths)
    by_study: dict[str, list[Path]] = {}
    for f in files:
        study = pydicom.dcmread(f, stop_before_pixels=True).get("StudyInstanceUID")
        if not study:
            raise CliError(f"{f}: no Study Instance UID: it cannot be filed into a study")
        by_study.setdefault(str(study), []).append(f)
    results = []
    for study, group in by_study.items():
        results += store_files(args.url, group, study_uid=study, retries=args.retries)
    failed = [r for r in results if r.status != "stored"]
    if args.json:
        print(
            json.dumps({"stored": len(results) - len(failed), "failed": [vars(r) for r in failed]}, indent=2)
        )
    else:
        print(
            f"{len(results) - len(failed)} of {len(results)} instances stored in {len(by_study)} study(ies)"
        )
        for r in failed:
            print(f"failed: {r.path}: {r.error}")
    return 1 if failed else 0


def add_parser(sub: Any) -> None:
    """Register ``pacs search`` and ``pacs store`` on the subcommand parsers ``sub``."""
    pacs = sub.add_parser("pacs", help="search a DICOMweb server (PACS) and store DICOM files into it")
    psub = pacs.add_subparsers(dest="pacs_command", required=True, metavar="PACS_COMMAND")

    p = psub.add_parser(
        "search",
        help="list a DICOMweb server's studies and series (UIDs, description, modality, instances, "
        "the URL to open); no patient fields unless --show-identity",
    )
    p.add_argument("url", metavar="URL", help="the DICOMweb root (e.g. http://127.0.0.1:8042/dicom-web)")
    p.add_argument("--patient-id", default=None, metavar="ID")
    p.add_argument(
        "--study-date", default=None, metavar="RANGE", help="YYYYMMDD, or YYYYMMDD-YYYYMMDD (either end open)"
    )
    p.add_argument("--modality", default=None, help="e.g. MR, CT")
    p.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    p.add_argument("--show-identity", action="store_true", help="also the patient's name, ID and birth date")
    p.add_argument("--json", action="store_true", help='print {"studies": [...]}')
    p.set_defaults(func=cmd_search)

    p = psub.add_parser(
        "store",
        help="send DICOM files (or every DICOM file under a folder) into their studies by STOW-RS, "
        "one request per instance, retried, each checked to be listed afterwards",
    )
    p.add_argument("url", metavar="URL", help="the DICOMweb root")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--retries", type=int, default=3, help="further tries of a failure that may pass")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_store)
