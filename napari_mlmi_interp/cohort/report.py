"""An HTML case report from a batch's results: key slices with overlays, the five elements'
evidence and ratings, the model card. No patient identifiers: cases appear by pseudonym,
and no input path, file name or DICOM header text is written.

Pictures are PNGs embedded in the page (one self-contained file). Slices are shown in
radiological convention: axial and coronal with the patient's left on the viewer's right,
anterior (axial) and superior (coronal, sagittal) up; each through the map's peak, with
pixels drawn at their physical aspect ratio.

The peak is the one :meth:`~napari_mlmi_interp.explain.Explanation.peak_lps` reports and the
localization figures use (:func:`napari_mlmi_interp.metrics.peak_index`): the voxel with the
largest value of the unclipped map, signed maps included.
Clipping at the 99.5th percentile is for the colours only, so a saturated plateau elsewhere
never moves the slices.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..framework.evidence import FIGURES, Figure
from ..framework.settings import DEFAULT_TOPK_PERCENT
from ..io.volume import Geometry, Volume
from ..metrics.localization import peak_index
from ..palette import diverging_rgba

__all__ = [
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
#: Colour of the ticks that mark the peak on each panel (green: in neither colormap).
TICK_COLOUR = (40, 255, 40)


def _lps_order(geometry: Geometry) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Axis permutation and flips that turn the array into one indexed (L, P, S), each increasing.

    Exact: voxels are reordered, never resampled (an oblique grid is shown on its nearest
    LPS axes, as DICOM viewers do).
    """
    perm = geometry.nearest_lps_permutation()
    d = geometry.direction[:, list(perm)]
    flips = tuple(bool(d[k, k] < 0) for k in range(3))
    return perm, (flips[0], flips[1], flips[2])


def _to_spl(array: np.ndarray, perm: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> np.ndarray:
    """``array`` reordered to (S, P, L), each increasing."""
    a = np.transpose(np.asarray(array), perm)
    a = a[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return a.transpose(2, 1, 0)


def _spl_index(
    index: tuple[int, int, int],
    shape: tuple[int, ...],
    perm: tuple[int, int, int],
    flips: tuple[bool, bool, bool],
) -> tuple[int, int, int]:
    """Where the voxel at array ``index`` lands in :func:`_to_spl`'s array: ``(S, P, L)``."""
    t = [index[p] for p in perm]
    n = [shape[p] for p in perm]
    t = [n[k] - 1 - t[k] if flips[k] else t[k] for k in range(3)]
    return (t[2], t[1], t[0])


def _hot(v: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white ramp for v in [0, 1] (RGB floats)."""
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def _panel(
    grey: np.ndarray,
    heat: np.ndarray,
    aspect: float,
    floor: float | None,
    mark: tuple[int, int],
    height: int = 220,
) -> Any:
    """One slice as a PIL image: grey anatomy, heat over it, ticks at the edges on ``mark`` (row, col).

    ``heat`` is in [-1, 1] (already clipped for display); ``floor`` is None for a signed map
    (diverging colours); ``aspect`` is column spacing over row spacing.
    """
    from PIL import Image, ImageDraw

    lo, hi = np.percentile(grey, [1, 99.5])
    g = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    if floor is None:  # signed: the viewer's diverging colormap at the viewer's opacity (0.8)
        rgba = diverging_rgba(heat)
        alpha = 0.8 * rgba[..., 3:]
        rgb = rgb * (1 - alpha) + rgba[..., :3] * alpha
    else:  # below the floor the anatomy shows through (the viewer's rule: top 10 % of the positives)
        v = np.clip((heat - floor) / max(1 - floor, 1e-6), 0, 1)
        alpha = (v > 0)[..., None] * (0.45 + 0.4 * v[..., None])
        rgb = rgb * (1 - alpha) + _hot(0.34 + 0.5 * v) * alpha  # red at the floor, yellow at the top
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    rows, cols = grey.shape
    width = max(1, round(height * cols * aspect / rows))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    # ticks on the four edges point at the peak without covering it
    y = (mark[0] + 0.5) * height / rows
    x = (mark[1] + 0.5) * width / cols
    tick = max(6, height // 25)
    draw = ImageDraw.Draw(image)
    draw.line([(x, 0), (x, tick)], fill=TICK_COLOUR, width=2)
    draw.line([(x, height - 1 - tick), (x, height - 1)], fill=TICK_COLOUR, width=2)
    draw.line([(0, y), (tick, y)], fill=TICK_COLOUR, width=2)
    draw.line([(width - 1 - tick, y), (width - 1, y)], fill=TICK_COLOUR, width=2)
    return image


@dataclass(frozen=True)
class KeySlices:
    """Three slices through a map's peak, and where that peak is.

    Attributes
    ----------
    png : bytes
        Axial, coronal and sagittal panels side by side (PNG, radiological convention).
    index : tuple of int
        The peak's index in the map's own array, ``(z, y, x)``.
    lps_mm : tuple of float
        The peak's patient position (left, posterior, superior), in mm.
    value : float
        The map's value at the peak (unclipped).
    slices : dict
        ``{"axial": s, "coronal": p, "sagittal": l}``: the slices drawn, as indices along S, P
        and L of the map reordered to (S, P, L) increasing (no resampling).
    """

    png: bytes
    index: tuple[int, int, int]
    lps_mm: tuple[float, float, float]
    value: float
    slices: dict[str, int]


def render_key_slices(scan: Volume, amap: Volume, *, signed: bool = False) -> KeySlices:
    """Axial, coronal and sagittal slices of ``scan`` through the peak of ``amap``, heat overlaid.

    Parameters
    ----------
    scan, amap : Volume
        The scan and its attribution map, on the same grid (the map's geometry places them).
    signed : bool
        Whether the map is signed: negative values (evidence against the target) are then
        drawn in blue. The peak is the largest value either way.
    """
    from PIL import Image

    if tuple(scan.shape) != tuple(amap.shape):
        raise ValueError(f"the map must be on the scan's grid, got shapes {amap.shape} and {scan.shape}")
    geometry = amap.geometry
    raw = np.asarray(amap.array, dtype=np.float64)
    peak = peak_index(raw)
    perm, flips = _lps_order(geometry)
    k, j, i = _spl_index(peak, raw.shape, perm, flips)
    grey = _to_spl(np.asarray(scan.array, dtype=np.float32), perm, flips)
    heat = _to_spl(raw, perm, flips)
    sl, sp, ss = (geometry.spacing[a] for a in perm)
    # colours only: clipped at the 99.5th percentile of the attributed voxels
    magnitude = np.abs(heat) if signed else heat
    attributed = magnitude[magnitude > 0]
    scale = float(np.percentile(attributed, 99.5)) if attributed.size else 1.0
    heat = np.clip(heat / max(scale, 1e-12), -1.0 if signed else 0.0, 1.0)
    shown = np.abs(heat[heat != 0])
    floor = None if signed else (float(min(np.percentile(shown, 90), 0.9)) if shown.size else 0.0)
    n_s = heat.shape[0]
    panels = [
        # axial: rows P (anterior up), columns L (patient's left on the right)
        _panel(grey[k], heat[k], sl / sp, floor, (j, i)),
        # coronal: rows S flipped (superior up), columns L
        _panel(grey[::-1, j, :], heat[::-1, j, :], sl / ss, floor, (n_s - 1 - k, i)),
        # sagittal: rows S flipped, columns P (anterior on the left)
        _panel(grey[::-1, :, i], heat[::-1, :, i], sp / ss, floor, (n_s - 1 - k, j)),
    ]
    gap = 6
    strip = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, panels[0].height), (20, 20, 20))
    x = 0
    for p in panels:
        strip.paste(p, (x, 0))
        x += p.width + gap
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    lps = geometry.to_lps(peak)
    return KeySlices(
        buf.getvalue(),
        peak,
        (float(lps[0]), float(lps[1]), float(lps[2])),
        float(raw[peak]),
        {"axial": int(k), "coronal": int(j), "sagittal": int(i)},
    )


def key_slices(scan: Volume, amap: Volume, *, signed: bool = False) -> bytes:
    """PNG: axial, coronal and sagittal slices through the map's peak (see :func:`render_key_slices`)."""
    return render_key_slices(scan, amap, signed=signed).png


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
    """
    from .. import __version__
    from ..io import load
    from .batch import case_inputs

    inputs = case_inputs(result_dir)

    root = Path(result_dir)
    config_path = root / "batch.json"
    if not config_path.is_file():
        raise ValueError(f"{root}: not a batch result folder (no batch.json)")
    config = json.loads(config_path.read_text())
    records = []
    order = {key: i for i, key in enumerate(config.get("order", []))}  # the batch's order
    folders = sorted((root / "cases").iterdir(), key=lambda f: (order.get(f.name, len(order)), f.name))
    for folder in folders:
        for name in ("case.json", "error.json"):
            if (folder / name).is_file():
                records.append(json.loads((folder / name).read_text()))
                break
    ok = [r for r in records if r.get("status") == "ok"]
    study_path = Path(study) if study else None
    study_rows: list[dict[str, Any]] = []
    if study_path is not None:
        from ..store import StudyStore

        with StudyStore(study_path) as store:
            study_rows = store.rows()
    methods = config["methods"]
    titles = {m: _method_title(m) for m in methods}
    legend: dict[str, str] = {}  # label -> definition, every figure the report shows

    def label_cell(key: str, k: float, tag: str = "td", suffix: str = "") -> str:
        label, definition = figure_label(key, topk_percent=k)
        legend[label] = definition
        return f"<{tag} title='{html.escape(definition, quote=True)}'>{html.escape(label + suffix)}</{tag}>"

    batch_k = _topk_percent(config)
    parts = [
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
            label_cell("peak_to_roi_mm", batch_k, "th", f" (mm), {titles[m]}")
            + label_cell("pointing_game", batch_k, "th", f", {titles[m]}")
            for m in methods
        )
        + "</tr>",
    ]
    for r in records:
        cid = html.escape(r.get("case_id") or r["case"])
        if r.get("status") != "ok":
            kind = html.escape((r.get("error") or "error").split(":")[0])
            parts.append(f"<tr><td>{cid}</td><td colspan='{1 + 2 * len(methods)}'>failed ({kind})</td></tr>")
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
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    for r in ok[: max_cases or len(ok)]:
        cid = r.get("case_id") or r["case"]
        parts.append(f"<h2>Case {html.escape(cid)}</h2>")
        # case files hold no paths: the summary's input column does (none when anonymised)
        source = inputs.get(r["case"]) or r.get("input")
        scan = load(source)[0] if source else None
        for m in methods:
            entry = r["methods"][m]
            map_path = root / "cases" / r["case"] / f"{m}.nii.gz"  # still found if the folder moved
            if not map_path.is_file():
                map_path = Path(entry["map"])
            (amap,) = load(map_path)[:1]
            sidecar = json.loads(map_path.with_name(f"{m}.json").read_text())
            metrics = sidecar["metrics"]
            topk = _topk_percent(metrics.get("settings"))
            signed = bool(sidecar.get("signed", False))
            background = scan if scan is not None else amap.with_array(np.zeros(amap.shape, np.float32))
            view = render_key_slices(background, amap, signed=signed)
            png = base64.b64encode(view.png).decode()
            where = _lps_text(view.lps_mm)
            index = ", ".join(str(x) for x in view.index)
            parts.append(
                f"<h3>{html.escape(titles[m])}: {html.escape(str(entry['prediction'].get('predicted')))}, "
                f"peak at LPS {where} mm</h3>"
                "<figure class='key-slices'>"
                f"<img alt='axial, coronal and sagittal slices through the peak of the "
                f"{html.escape(titles[m])} map' data-peak-index='{index}' "
                + "".join(f"data-slice-{plane}='{s}' " for plane, s in view.slices.items())
                + f"src='data:image/png;base64,{png}'>"
                f"<figcaption>Slices through the peak (largest value of the map, {_fmt(view.value)}): voxel "
                f"<span class='peak-index'>({index})</span> (array z, y, x) at LPS "
                f"<span class='peak-lps'>{where}</span> mm, marked by green ticks. Axial (anterior up, "
                "patient's left on the right) · coronal (superior up, patient's left on the right) · "
                "sagittal (anterior left, superior up). Colours clipped at the 99.5th percentile "
                "for display only."
                + (
                    " No scan behind the map: this batch keeps no input paths (anonymised)."
                    if scan is None
                    else ""
                )
                + "</figcaption></figure>"
            )
            for warning in sidecar.get("warnings") or []:
                parts.append(f"<p class='warning'>Warning: {html.escape(str(warning))}</p>")
            rows = []
            bands = metrics.get("bands", {})
            for element, title in ELEMENT_TITLES.items():
                for key, value in metrics.get(element, {}).items():
                    rows.append(
                        f"<tr><td>{title}</td>{label_cell(key, topk)}"
                        f"<td>{html.escape(_figure_text(key, value))}</td>"
                        f"<td>{_chip(bands.get(key, 'info'))}</td></tr>"
                    )
            parts.append(
                "<table><tr><th>element</th><th>figure</th><th>value</th><th>band</th></tr>"
                + "".join(rows)
                + "</table>"
            )
            ratings = _ratings(study_rows, cid, m)
            if ratings:
                parts.append(
                    "<table><tr><th>reader</th><th>element</th><th>rating</th><th>note</th></tr>"
                    + "".join(
                        "<tr>"
                        + "".join(
                            f"<td>{html.escape(str(x[k] or ''))}</td>"
                            for k in ("reader", "element", "rating", "note")
                        )
                        + "</tr>"
                        for x in ratings
                    )
                    + "</table>"
                )
            elif study_path is not None:
                parts.append("<p><i>No ratings for this explanation in the study file.</i></p>")
    if legend:
        parts.append(
            "<h2>Figures</h2><dl class='legend'>"
            + "".join(
                f"<dt>{html.escape(label)}</dt><dd>{html.escape(definition)}</dd>"
                for label, definition in legend.items()
                if definition
            )
            + "</dl>"
        )
    parts.append("</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
