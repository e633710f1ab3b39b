"""Scans: ``info`` (geometry in LPS mm), ``convert`` (to NIfTI) and ``sample`` (the sample scan)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..io import load, output_stem, save
from ._common import CliError, _fmt, _load, _out_dir


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
    from ..sample import write_sample

    paths: dict[str, Any]
    if args.shortcut and args.real:
        raise CliError("give --shortcut or --real, not both")
    if args.real:
        from ..sample import write_real_t1

        paths = write_real_t1(args.out_dir)
    elif args.shortcut:
        from ..synthetic import make_shortcut_case

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


def add_parser(sub: Any) -> None:
    """Register ``info``, ``convert`` and ``sample`` on the subcommand parsers ``sub``."""
    p = sub.add_parser("info", help="describe every volume found at PATH (geometry in LPS mm)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help='print {"volumes": [...]}')
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="write every volume found at INPUT as OUT_DIR/<name>.nii.gz")
    p.add_argument("input")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "sample", help="write the sample brain scan and its lesion mask (or the real T1) as NIfTI"
    )
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shortcut", action="store_true", help="the shortcut case (lesion + burned-in tag) instead"
    )
    p.add_argument(
        "--real",
        action="store_true",
        help="the real T1 (brainchop, 256³ 1 mm, MIT) as OUT_DIR/real_t1.nii.gz, for the brainchop-* models",
    )
    p.add_argument("--json", action="store_true", help='print {"scan": PATH, "mask": PATH}')
    p.set_defaults(func=cmd_sample)
