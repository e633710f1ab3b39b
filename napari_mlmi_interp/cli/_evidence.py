"""``explain --evidence``: the five elements' figures of the map just made, in its JSON.

The map's figures (localization against the segmentation target's ROI when there is one,
recognizability, physical attribution) and the model's (deletion and insertion of the
target's score, cascading randomisation, infidelity, score drop without the top-k % region,
augmentation spread), with the same settings, bands and keys as the sidebar, ``evaluate``
and ``batch``. A classifier's score is its class probability; a segmenter's, its ROI score
(class T inside mask M) scaled to 1 on the scan and 0 on the baseline.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_evidence_options", "explain_evidence", "print_evidence"]


def add_evidence_options(p: argparse.ArgumentParser) -> None:
    """``--evidence [full|quick]`` and ``--evidence-percent`` on the ``explain`` parser."""
    from ..framework.settings import DEFAULT_SETTINGS

    p.add_argument(
        "--evidence",
        nargs="?",
        const="full",
        default=None,
        choices=("full", "quick", "brief", "auto"),
        help="also compute the five elements' figures (the map's, against the ROI when one is "
        "given, and the model's: deletion/insertion, randomisation, infidelity, score drop, "
        "augmentation spread; the model runs ~70 times at 'full', ~40 'quick', ~25 'brief'; "
        "'auto': the largest that fits 10 minutes, timed from the map's own run); in the "
        "--json output and the provenance file",
    )
    p.add_argument(
        "--evidence-percent",
        type=float,
        default=DEFAULT_SETTINGS.topk_percent,
        metavar="K",
        help=f"k of the top-k %% region of the evidence (default {DEFAULT_SETTINGS.topk_percent:g})",
    )


def explain_evidence(args: argparse.Namespace, model: Any, volume: Any, result: Any) -> dict[str, Any] | None:
    """The figures of ``result`` as JSON (also kept in its provenance); None without ``--evidence``."""
    if getattr(args, "evidence", None) is None:
        return None
    from ..framework import ELEMENT_INFO, map_evidence, model_evidence
    from ..framework.evidence.effort import EFFORTS, effort_for, effort_text
    from ..framework.evidence.from_map import against_explained_roi
    from ..framework.files import flat_figures
    from ..framework.guide import DEFAULT_TIME_LIMIT_MIN

    percent = args.evidence_percent
    if args.evidence == "auto":
        effort = effort_for(result, model, limit_minutes=DEFAULT_TIME_LIMIT_MIN)
        options, chosen = effort.options, effort.to_dict()
        if not getattr(args, "quiet", False):
            print(f"mlmi-interp: evidence at the {effort_text(effort)}", file=sys.stderr)
    else:
        options, chosen = EFFORTS[args.evidence], {"effort": args.evidence}
    if not getattr(args, "quiet", False):
        print("mlmi-interp: computing the evidence (the model runs again)...", file=sys.stderr)
    explained = getattr(result, "roi", None)
    figures = map_evidence(result.native, roi=explained, scan=volume, percent=percent)
    figures = against_explained_roi(figures, explained, explained)
    figures = figures.merged(model_evidence(result, model, percent=percent, **options))
    figures.settings.update(chosen)
    nested = figures.to_dict()
    out = {
        **flat_figures(figures),
        "by_element": {e: nested[e] for e in ELEMENT_INFO},
        "bands": nested["bands"],
        "notes": {k: f.note for k, f in figures.figures.items() if f.value is None and f.note},
        "curves": nested["curves"],
        "settings": nested["settings"],
    }
    result.provenance["evidence"] = out
    return out


def print_evidence(evidence: dict[str, Any]) -> None:
    """The figures as text, one line each, grouped by element, with their bands."""
    from ..framework import ELEMENT_INFO

    for element, figures in evidence["by_element"].items():
        if figures:
            print(ELEMENT_INFO[element].title)
        for key, value in figures.items():
            band = evidence["bands"].get(key, "")
            shown = evidence["notes"].get(key, value) if value is None else value
            print(f"    {key:26s} {shown!s:40.40s} {band if band != 'info' else ''}")
