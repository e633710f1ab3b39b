"""An HTML case report from a batch's results: key slices with overlays, the five elements'
evidence and ratings, a model-card summary. No patient identifiers: cases appear by
pseudonym, and no input path, file name or DICOM header text is written.

Pictures are PNGs embedded in the page (one self-contained file). Slices are shown in
radiological convention: axial and coronal with the patient's left on the viewer's right,
anterior (axial) and superior (coronal, sagittal) up; each at the map's peak, with pixels
drawn at their physical aspect ratio.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..io.volume import Volume

__all__ = ["key_slices", "write_report"]

BAND_COLOURS = {"pass": "#2e7d32", "warn": "#ef8f00", "fail": "#c62828", "n/a": "#6b6b6b", "info": "#455a64"}
ELEMENT_TITLES = {
    "localization": "Localization",
    "visual_recognizability": "Visual recognizability",
    "physical_attribution": "Physical attribution",
    "model_transparency": "Model transparency",
    "actionability": "Actionability",
}


def _lps_arrays(scan: Volume, amap: Volume) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Scan and map resampled to nothing, only reoriented: arrays indexed (S, P, L), increasing."""
    import SimpleITK as sitk

    from ..io.formats import to_sitk

    out = []
    for v in (scan, amap):
        image = sitk.DICOMOrient(to_sitk(np.asarray(v.array, dtype=np.float32), v.geometry), "LPS")
        out.append(sitk.GetArrayFromImage(image))  # (z, y, x) = (S, P, L), each increasing
        spacing = image.GetSpacing()  # (L, P, S)
    return out[0], out[1], (spacing[2], spacing[1], spacing[0])


def _hot(v: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white ramp for v in [0, 1] (RGB floats)."""
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def _panel(grey: np.ndarray, heat: np.ndarray, aspect: float, floor: float, height: int = 220) -> Any:
    from PIL import Image

    lo, hi = np.percentile(grey, [1, 99.5])
    g = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    # below the floor the anatomy shows through (the viewer's rule: top 10 % of the positives)
    v = np.clip((heat - floor) / max(1 - floor, 1e-6), 0, 1)
    alpha = (v > 0)[..., None] * (0.45 + 0.4 * v[..., None])
    rgb = rgb * (1 - alpha) + _hot(0.34 + 0.5 * v) * alpha  # red at the floor, yellow at the top
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    width = max(1, round(height * grey.shape[1] * aspect / grey.shape[0]))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def key_slices(scan: Volume, amap: Volume) -> bytes:
    """PNG: axial, coronal and sagittal slices through the map's peak, heat overlaid."""
    from PIL import Image

    grey, heat, (ss, sp, sl) = _lps_arrays(scan, amap)
    positive = heat[heat > 0]
    scale = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    heat = np.clip(heat / max(scale, 1e-12), 0, 1)
    shown = heat[heat > 0]
    floor = float(min(np.percentile(shown, 90), 0.9)) if shown.size else 0.0
    k, j, i = np.unravel_index(int(np.argmax(heat)), heat.shape)
    panels = [
        # axial: rows P (anterior up), columns L (patient's left on the right)
        _panel(grey[k], heat[k], sl / sp, floor),
        # coronal: rows S flipped (superior up), columns L
        _panel(grey[::-1, j, :], heat[::-1, j, :], sl / ss, floor),
        # sagittal: rows S flipped, columns P (anterior on the left)
        _panel(grey[::-1, :, i], heat[::-1, :, i], sp / ss, floor),
    ]
    gap = 6
    strip = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, panels[0].height), (20, 20, 20))
    x = 0
    for p in panels:
        strip.paste(p, (x, 0))
        x += p.width + gap
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    return buf.getvalue()


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


def _ratings(rows: list[dict[str, Any]], case_id: str, method: str) -> list[dict[str, Any]]:
    """The current ratings and actions of one case and method (from ``StudyStore.rows()``)."""
    return [r for r in rows if r["case"] == case_id and r["method"] == method]


def _model_card(model_ref: str) -> str:
    from ..models import resolve_model

    try:
        spec = resolve_model(model_ref).spec
    except Exception as exc:  # the report still renders without it
        return f"<p>Model card unavailable: {html.escape(str(exc))}</p>"
    text = ""
    if spec.card and Path(spec.card).is_file():
        text = Path(spec.card).read_text()[:1500]
    import dataclasses

    shape = json.dumps(dataclasses.asdict(spec.input), default=str)
    facts = (
        f"<p><b>{html.escape(spec.name)}</b>: {html.escape(spec.task)}; classes "
        f"{html.escape(', '.join(spec.classes))}; input {html.escape(shape)}</p>"
    )
    return facts + (f"<pre class='card'>{html.escape(text)}</pre>" if text else "")


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
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>napari-mlmi-interp report</title>",
        "<style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px}th{background:#f2f2f2}.chip{color:#fff;border-radius:3px;padding:0 5px}"
        "img{display:block;margin:6px 0}pre.card{background:#f7f7f7;padding:8px;font-size:12px;"
        "white-space:pre-wrap}h2{border-bottom:2px solid #ddd}</style></head><body>",
        "<h1>Explanation report</h1>",
        f"<p>Model <b>{html.escape(config['model'])}</b>; methods {html.escape(', '.join(methods))}; "
        f"target {html.escape(str(config.get('target') or 'predicted class'))}; {len(records)} cases "
        f"({len(ok)} explained). napari-mlmi-interp {html.escape(__version__)}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Cases are shown by pseudonym only.</p>",
        "<h2>Model</h2>",
        _model_card(config["model"]),
        "<h2>Cohort</h2><table><tr><th>case</th><th>prediction</th>"
        + "".join(
            f"<th>{html.escape(m)}: peak to ROI (mm)</th><th>{html.escape(m)}: pointing game</th>"
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
                colour = BAND_COLOURS.get(band.get(key, "n/a"), "#455a64")
                cells.append(
                    f"<td><span class='chip' style='background:{colour}'>{_fmt(fig.get(key))}</span></td>"
                )
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    for r in ok[: max_cases or len(ok)]:
        cid = r.get("case_id") or r["case"]
        parts.append(f"<h2>Case {html.escape(cid)}</h2>")
        (scan,) = load(r["input"])[:1]
        for m in methods:
            entry = r["methods"][m]
            (amap,) = load(entry["map"])[:1]
            png = base64.b64encode(key_slices(scan, amap)).decode()
            sidecar = json.loads((Path(entry["map"]).with_name(f"{m}.json")).read_text())
            metrics = sidecar["metrics"]
            parts.append(
                f"<h3>{html.escape(m)}: {html.escape(str(entry['prediction'].get('predicted')))}, "
                f"peak at LPS {html.escape(_fmt(entry['peak_lps_mm']))} mm</h3>"
                f"<img alt='axial, coronal and sagittal slices through the peak of the {html.escape(m)} map' "
                f"src='data:image/png;base64,{png}'>"
                "<p style='font-size:12px'>axial (anterior up, patient's left on the right) · coronal "
                "(superior up) · sagittal (anterior left)</p>"
            )
            rows = []
            for element, title in ELEMENT_TITLES.items():
                figures = metrics.get(element, {})
                for key, value in figures.items():
                    band = metrics.get("bands", {}).get(key, "info")
                    colour = BAND_COLOURS.get(band, "#455a64")
                    rows.append(
                        f"<tr><td>{title}</td><td>{html.escape(key)}</td><td>{html.escape(_fmt(value))}</td>"
                        f"<td><span class='chip' style='background:{colour}'>{band}</span></td></tr>"
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
    parts.append("</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
