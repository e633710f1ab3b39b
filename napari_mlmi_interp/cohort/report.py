"""An HTML case report from a batch's results: key slices with overlays, the five elements'
evidence and ratings, the model card. No patient identifiers: cases appear by pseudonym,
and no input path, file name or DICOM header text is written.

Pictures are PNGs embedded in the page (one self-contained file): the key slices through
each map's peak (:mod:`.key_slices`, radiological convention, physical aspect ratio).
The page is assembled section by section: head and model card, the cohort table, each case
(key slices, warnings, evidence, ratings), the legend of every figure shown.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..framework.evidence import FIGURES, Figure
from ..framework.settings import DEFAULT_TOPK_PERCENT
from .key_slices import TICK_COLOUR, KeySlices, key_slices, render_key_slices

__all__ = [
    "TICK_COLOUR",
    "KeySlices",
    "figure_label",
    "key_slices",
    "render_key_slices",
    "render_markdown",
    "write_report",
]

BAND_COLOURS = {"pass": "#2e7d32", "warn": "#ef8f00", "fail": "#c62828", "n/a": "#6b6b6b", "info": "#455a64"}
ELEMENT_TITLES = {
    "localization": "Localization",
    "visual_recognizability": "Visual recognizability",
    "physical_attribution": "Physical attribution",
    "model_transparency": "Model transparency",
    "actionability": "Actionability",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "hit" if v else "miss"
    if isinstance(v, int | float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, list):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in list(v.items())[:4])
    return str(v)


def _lps_text(lps: Any) -> str:
    """An LPS position as the report prints it: ``(L, P, S)`` in mm, two decimals."""
    return "(" + ", ".join(f"{float(v):.2f}" for v in lps) + ")"


def _topk_percent(settings: dict[str, Any] | None) -> float:
    """k of the top-k % figures, from a sidecar's settings (the default when it says nothing)."""
    for key in ("topk_percent", "percent"):
        value = (settings or {}).get(key)
        if value is not None:
            return float(value)
    return DEFAULT_TOPK_PERCENT


def figure_label(key: str, *, topk_percent: float = DEFAULT_TOPK_PERCENT) -> tuple[str, str]:
    """A figure's human name and its definition with units, the top-k ones saying which k.

    ``("top-1 % Dice", "Dice overlap of the top-1 % most attributed voxels ...")``. A key
    that is not a known figure is shown as words (never as a raw key).
    """
    info = FIGURES.get(key)
    if info is None:
        return key.replace("_", " "), ""
    k = f"top-{topk_percent:g} %"
    label = info.label.replace("top-k %", k).replace("top-k", k)
    definition = info.definition.replace("top-k %", k).replace("top-k", k)
    if info.unit:
        definition += f" Unit: {info.unit}."
    return label, definition


def _method_title(name: str) -> str:
    from ..explain.methods import METHODS

    method = METHODS.get(name)
    return method.title if method is not None else name


def render_markdown(text: str, *, heading_offset: int = 2) -> str:
    """HTML of a Markdown text (CommonMark with tables), raw HTML in it escaped.

    Headings move down ``heading_offset`` levels so a card's ``#`` title sits below the
    report's own headings.
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    tokens = md.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + heading_offset)}"
    return md.renderer.render(tokens, md.options, {})


def _ratings(rows: list[dict[str, Any]], case_id: str, method: str) -> list[dict[str, Any]]:
    """The current ratings and actions of one case and method (from ``StudyStore.rows()``)."""
    return [r for r in rows if r["case"] == case_id and r["method"] == method]


def _input_text(spec_input: Any) -> str:
    parts = []
    if spec_input.spacing_mm:
        parts.append(" × ".join(f"{s:g}" for s in spec_input.spacing_mm) + " mm spacing")
    if spec_input.size:
        parts.append(" × ".join(str(s) for s in spec_input.size) + " voxels")
    if spec_input.patch_size:
        parts.append("patches of " + " × ".join(str(s) for s in spec_input.patch_size) + " voxels")
    if spec_input.orientation:
        parts.append(f"orientation {spec_input.orientation}")
    parts.append(f"{spec_input.channels} channel" + ("s" if spec_input.channels > 1 else ""))
    return ", ".join(parts) + " (sizes z, y, x)"


def _model_card(model_ref: str) -> str:
    from ..models import resolve_model

    try:
        spec = resolve_model(model_ref).spec
    except Exception as exc:  # the report still renders without it
        return f"<p>Model card unavailable: {html.escape(str(exc))}</p>"
    facts = (
        f"<p><b>{html.escape(spec.name)}</b>: {html.escape(spec.task)}; classes "
        f"{html.escape(', '.join(spec.classes))}; input {html.escape(_input_text(spec.input))}.</p>"
    )
    if spec.card and Path(spec.card).is_file():
        card = render_markdown(Path(spec.card).read_text(encoding="utf-8"))
        return facts + f"<div class='card'>{card}</div>"
    return facts + "<p><i>This model has no model card.</i></p>"


def _chip(band: str) -> str:
    colour = BAND_COLOURS.get(band, BAND_COLOURS["info"])
    return f"<span class='chip' style='background:{colour}'>{html.escape(band)}</span>"


def _figure_text(key: str, value: Any) -> str:
    """A figure's value with its unit (the sidebar's formatting)."""
    if key in FIGURES:
        return Figure(key, value).text()
    return _fmt(value)


STYLE = (
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "font-size:13px}th{background:#f2f2f2}.chip{color:#fff;border-radius:3px;padding:0 5px}"
    "[title]{text-decoration:underline dotted #999}"
    "figure{margin:6px 0}img{display:block;margin:6px 0}figcaption{font-size:12px;color:#444}"
    "div.card{background:#f7f7f7;padding:4px 12px;font-size:13px;border-left:3px solid #ddd}"
    "div.card code{background:#eaeaea;padding:0 3px}div.card h3{font-size:16px}"
    "dl.legend{font-size:12px}dl.legend dt{font-weight:bold;margin-top:4px}"
    "h2{border-bottom:2px solid #ddd}p.warning{color:#8a4b00;font-size:13px}"
)


def write_report(
    result_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    study: str | os.PathLike[str] | None = None,
    max_cases: int | None = None,
) -> Path:
    """Write ``out`` (HTML) from a batch result folder (``batch.json``, ``cases/*/case.json``).

    Parameters
    ----------
    study : path-like, optional
        A study file whose ratings of these cases (matched by pseudonym and method) are shown.
    max_cases : int, optional
        Show at most this many cases in detail (all are in the table).

    Raises
    ------
    InputError
        When ``result_dir`` is not a batch result folder (a ``ValueError`` too).
    """
    from .batch import case_inputs

    inputs = case_inputs(result_dir)
    root = Path(result_dir)
    config, records = _read_batch(root)
    ok = [r for r in records if r.get("status") == "ok"]
    study_path = Path(study) if study else None
    study_rows = _study_rows(study_path)
    methods = config["methods"]
    titles = {m: _method_title(m) for m in methods}
    legend = _Legend()
    parts = _head(config, titles, records, ok, legend)
    parts += _cohort_rows(records, methods)
    parts.append("</table>")
    for r in ok[: max_cases or len(ok)]:
        parts += _case_section(r, config, titles, root, inputs.get(r["case"]), study_rows, study_path, legend)
    if legend.definitions:
        parts.append(legend.html())
    parts.append("</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _read_batch(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The batch's ``batch.json`` and every case's record (done or failed), in the batch's order."""
    config_path = root / "batch.json"
    if not config_path.is_file():
        raise InputError(f"{root}: not a batch result folder (no batch.json)")
    config = json.loads(config_path.read_text())
    records = []
    order = {key: i for i, key in enumerate(config.get("order", []))}  # the batch's order
    folders = sorted((root / "cases").iterdir(), key=lambda f: (order.get(f.name, len(order)), f.name))
    for folder in folders:
        for name in ("case.json", "error.json"):
            if (folder / name).is_file():
                records.append(json.loads((folder / name).read_text()))
                break
    return config, records


def _study_rows(study_path: Path | None) -> list[dict[str, Any]]:
    """The current ratings and actions of a study file (none without one)."""
    if study_path is None:
        return []
    from ..store import StudyStore

    with StudyStore(study_path) as store:
        return store.rows()


class _Legend:
    """Every figure the report shows, label -> definition, for the legend at its end."""

    def __init__(self) -> None:
        self.definitions: dict[str, str] = {}

    def cell(self, key: str, k: float, tag: str = "td", suffix: str = "") -> str:
        """A table cell naming figure ``key`` (top-k figures with ``k``), its definition on hover."""
        label, definition = figure_label(key, topk_percent=k)
        self.definitions[label] = definition
        return f"<{tag} title='{html.escape(definition, quote=True)}'>{html.escape(label + suffix)}</{tag}>"

    def html(self) -> str:
        return (
            "<h2>Figures</h2><dl class='legend'>"
            + "".join(
                f"<dt>{html.escape(label)}</dt><dd>{html.escape(definition)}</dd>"
                for label, definition in self.definitions.items()
                if definition
            )
            + "</dl>"
        )


def _head(
    config: dict[str, Any],
    titles: dict[str, str],
    records: list[dict[str, Any]],
    ok: list[dict[str, Any]],
    legend: _Legend,
) -> list[str]:
    """The page's head, what was run, the model card and the cohort table's header row."""
    from .. import __version__

    methods = config["methods"]
    batch_k = _topk_percent(config)
    return [
        "<!doctype html><html><head><meta charset='utf-8'><title>napari-mlmi-interp report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Explanation report</h1>",
        f"<p>Model <b>{html.escape(config['model'])}</b>; methods "
        f"{html.escape(', '.join(titles[m] for m in methods))}; "
        f"target {html.escape(str(config.get('target') or 'predicted class'))}; {len(records)} cases "
        f"({len(ok)} explained). napari-mlmi-interp {html.escape(__version__)}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Cases are shown by pseudonym only.</p>",
        "<h2>Model</h2>",
        _model_card(config["model"]),
        "<h2>Cohort</h2><table><tr><th>case</th><th>prediction</th>"
        + "".join(
            legend.cell("peak_to_roi_mm", batch_k, "th", f" (mm), {titles[m]}")
            + legend.cell("pointing_game", batch_k, "th", f", {titles[m]}")
            for m in methods
        )
        + "</tr>",
    ]


def _cohort_rows(records: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """One table row per case: its prediction, and per method the peak's distance and the pointing game."""
    rows = []
    for r in records:
        cid = html.escape(r.get("case_id") or r["case"])
        if r.get("status") != "ok":
            kind = html.escape((r.get("error") or "error").split(":")[0])
            rows.append(f"<tr><td>{cid}</td><td colspan='{1 + 2 * len(methods)}'>failed ({kind})</td></tr>")
            continue
        first = r["methods"][methods[0]]["prediction"]
        p = first.get("probabilities", {}).get(first.get("predicted"), None)
        cells = [f"<td>{cid}</td><td>{html.escape(str(first.get('predicted')))} ({_fmt(p)})</td>"]
        for m in methods:
            fig = r["methods"][m]["figures"]
            band = r["methods"][m]["bands"]
            for key in ("peak_to_roi_mm", "pointing_game"):
                value = fig.get(key)
                text = _fmt(value) if key == "peak_to_roi_mm" else _figure_text(key, value)
                colour = BAND_COLOURS.get(band.get(key, "n/a"), BAND_COLOURS["info"])
                cells.append(
                    f"<td><span class='chip' style='background:{colour}'>{html.escape(text)}</span></td>"
                )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _case_section(
    r: dict[str, Any],
    config: dict[str, Any],
    titles: dict[str, str],
    root: Path,
    source: str | None,
    study_rows: list[dict[str, Any]],
    study_path: Path | None,
    legend: _Legend,
) -> list[str]:
    """One case in detail: per method its key slices, warnings, evidence and ratings."""
    from ..io import load

    cid = r.get("case_id") or r["case"]
    parts = [f"<h2>Case {html.escape(cid)}</h2>"]
    # case files hold no paths: the summary's input column does (none when anonymised)
    source = source or r.get("input")
    scan = load(source)[0] if source else None
    for m in config["methods"]:
        entry = r["methods"][m]
        map_path = root / "cases" / r["case"] / f"{m}.nii.gz"  # still found if the folder moved
        if not map_path.is_file():
            map_path = Path(entry["map"])
        (amap,) = load(map_path)[:1]
        sidecar = json.loads(map_path.with_name(f"{m}.json").read_text())
        metrics = sidecar["metrics"]
        background = scan if scan is not None else amap.with_array(np.zeros(amap.shape, np.float32))
        view = render_key_slices(background, amap, signed=bool(sidecar.get("signed", False)))
        predicted = str(entry["prediction"].get("predicted"))
        parts.append(_key_slices_html(view, titles[m], predicted, with_scan=scan is not None))
        for warning in sidecar.get("warnings") or []:
            parts.append(f"<p class='warning'>Warning: {html.escape(str(warning))}</p>")
        parts.append(_evidence_table(metrics, _topk_percent(metrics.get("settings")), legend))
        ratings = _ratings(study_rows, cid, m)
        if ratings:
            parts.append(_ratings_table(ratings))
        elif study_path is not None:
            parts.append("<p><i>No ratings for this explanation in the study file.</i></p>")
    return parts


def _key_slices_html(view: KeySlices, title: str, predicted: str, *, with_scan: bool) -> str:
    """The heading and the captioned picture of one map's key slices (peak index and LPS in mm)."""
    png = base64.b64encode(view.png).decode()
    where = _lps_text(view.lps_mm)
    index = ", ".join(str(x) for x in view.index)
    return (
        f"<h3>{html.escape(title)}: {html.escape(predicted)}, "
        f"peak at LPS {where} mm</h3>"
        "<figure class='key-slices'>"
        f"<img alt='axial, coronal and sagittal slices through the peak of the "
        f"{html.escape(title)} map' data-peak-index='{index}' "
        + "".join(f"data-slice-{plane}='{s}' " for plane, s in view.slices.items())
        + f"src='data:image/png;base64,{png}'>"
        f"<figcaption>Slices through the peak (largest value of the map, {_fmt(view.value)}): voxel "
        f"<span class='peak-index'>({index})</span> (array z, y, x) at LPS "
        f"<span class='peak-lps'>{where}</span> mm, marked by green ticks. Axial (anterior up, "
        "patient's left on the right) · coronal (superior up, patient's left on the right) · "
        "sagittal (anterior left, superior up). Colours clipped at the 99.5th percentile "
        "for display only."
        + ("" if with_scan else " No scan behind the map: this batch keeps no input paths (anonymised).")
        + "</figcaption></figure>"
    )


def _evidence_table(metrics: dict[str, Any], topk: float, legend: _Legend) -> str:
    """The five elements' figures of one map: value and band, each named with its definition."""
    rows = []
    bands = metrics.get("bands", {})
    for element, title in ELEMENT_TITLES.items():
        for key, value in metrics.get(element, {}).items():
            rows.append(
                f"<tr><td>{title}</td>{legend.cell(key, topk)}"
                f"<td>{html.escape(_figure_text(key, value))}</td>"
                f"<td>{_chip(bands.get(key, 'info'))}</td></tr>"
            )
    return (
        "<table><tr><th>element</th><th>figure</th><th>value</th><th>band</th></tr>"
        + "".join(rows)
        + "</table>"
    )


_RATING_COLUMNS = ("reader", "element", "rating", "note")


def _ratings_table(ratings: list[dict[str, Any]]) -> str:
    """The readers' ratings and notes of one explanation."""
    return (
        "<table><tr><th>reader</th><th>element</th><th>rating</th><th>note</th></tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(x[k] or ''))}</td>" for k in _RATING_COLUMNS) + "</tr>"
            for x in ratings
        )
        + "</table>"
    )
