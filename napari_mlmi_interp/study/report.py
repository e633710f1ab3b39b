"""The reader study's analysis as one self-contained HTML page (``study analyze --html``).

Tables of every figure of :func:`~.analysis.analyze_study` and three plots: rating
distributions per element, agreement (alpha with its interval) per element, and each element's
mean rating against its automatic figures. Plots are matplotlib figures drawn with the Agg
canvas directly (no pyplot, no GUI backend: safe inside napari) and embedded as PNG.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from ..framework.evidence import FIGURES
from ..vocabulary import ACTIONS, ELEMENTS

__all__ = ["report_html", "write_report"]

_STYLE = (
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "font-size:13px}th{background:#f2f2f2}td.n{text-align:right}.muted{color:#666;font-size:13px}"
)
#: Rating colours, 1 (red) to 5 (green), and grey for not applicable.
_RATING_COLOURS = ("#c62828", "#ef8f00", "#fbc02d", "#7cb342", "#2e7d32", "#9e9e9e")


def title(element: str) -> str:
    return element.replace("_", " ").capitalize()


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _ci(ci: list[float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _distribution_plot(result: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    names = list(ELEMENTS)[::-1]
    left = [0.0] * len(names)
    for k, key in enumerate(("1", "2", "3", "4", "5", "NA")):
        counts = [result["distributions"][e][key] for e in names]
        ax.barh([title(e) for e in names], counts, left=left, color=_RATING_COLOURS[k], label=key)
        left = [a + b for a, b in zip(left, counts)]
    ax.set_xlabel("ratings (current, all readers)")
    ax.legend(ncols=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, title="rating")
    return _png(fig)


def _agreement_plot(result: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    names = list(ELEMENTS)[::-1]
    for y, e in enumerate(names):
        a = result["agreement"][e]
        if a["krippendorff_alpha"] is None:
            text = "not rated" if a["readers"] == 0 else "undefined (see the table)"
            ax.text(0.0, y, text, va="center", ha="center", color="#666", fontsize=9)
            continue
        ax.plot([a["krippendorff_alpha"]], [y], "o", color="#1565c0")
        if a["ci95"]:
            ax.plot(a["ci95"], [y, y], "-", color="#1565c0")
    for x, label in ((0.667, "0.667"), (0.8, "0.8")):
        ax.axvline(x, color="#999", lw=0.8, ls="--")
        ax.text(x, len(names) - 0.4, label, ha="center", fontsize=8, color="#666")
    ax.set_yticks(range(len(names)), [title(e) for e in names])
    ax.set_xlim(-1, 1.05)
    ax.set_xlabel("Krippendorff's alpha (ordinal), 95 % interval")
    return _png(fig)


def _scatter_plot(result: dict[str, Any], limit: int = 12) -> str:
    from matplotlib.figure import Figure

    panels = [
        (e, f, r)
        for e, figs in result["rating_vs_figures"].items()
        for f, r in figs.items()
        if r.get("n", 0) >= 3
    ][:limit]
    if not panels:
        return "<p class='muted'>No run has both a rating and a figure (three runs needed).</p>"
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(2.25 * cols, 2.2 * rows), dpi=100, layout="constrained")
    for i, (e, f, r) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs, ys = zip(*r["points"]) if r["points"] else ((), ())
        ax.scatter(xs, ys, s=14, color="#1565c0", alpha=0.8)
        rho = "undefined" if r["spearman_rho"] is None else f"{r['spearman_rho']:.2f}"
        ax.set_title(f"{FIGURES[f].label}\nρ = {rho}, n = {r['n']}", fontsize=8)
        ax.set_ylim(0.7, 5.3)
        ax.set_ylabel(f"{title(e)} rating", fontsize=7)
        ax.tick_params(labelsize=7)
    return _png(fig)


def _agreement_rows(result: dict[str, Any]) -> list[str]:
    out = [
        "<tr><th>element</th><th>alpha</th><th>95 % interval</th><th>readers</th><th>items</th><th></th></tr>"
    ]
    for e in ELEMENTS:
        a = result["agreement"][e]
        out.append(
            f"<tr><td>{title(e)}</td><td class=n>{_fmt(a['krippendorff_alpha'])}</td>"
            f"<td>{_ci(a['ci95'])}</td>"
            f"<td class=n>{a['readers']}</td><td class=n>{a['items']}</td>"
            f"<td class=muted>{html.escape(a.get('note', ''))}</td></tr>"
        )
    return out


def _kappa_rows(result: dict[str, Any]) -> list[str]:
    out = ["<tr><th>element</th><th>readers</th><th>kappa</th><th>n</th></tr>"]
    for e in ELEMENTS:
        for k in result["pairwise_kappa"][e]:
            a, b = (html.escape(r) for r in k["readers"])
            out.append(
                f"<tr><td>{title(e)}</td><td>{a} · {b}</td><td class=n>{_fmt(k['kappa'])}</td>"
                f"<td class=n>{k['n']}</td></tr>"
            )
    return out


def _intra_rows(result: dict[str, Any]) -> list[str]:
    out = ["<tr><th>element</th><th>reader</th><th>repeats</th><th>same rating</th><th>kappa</th></tr>"]
    for e, readers in result["intra_reader"].items():
        for reader, r in readers.items():
            out.append(
                f"<tr><td>{title(e)}</td><td>{html.escape(reader)}</td><td class=n>{r['n']}</td>"
                f"<td class=n>{r['exact_agreement']:.0%}</td><td class=n>{_fmt(r['kappa'])}</td></tr>"
            )
    return out


def _figure_rows(result: dict[str, Any]) -> list[str]:
    out = [
        "<tr><th>element</th><th>figure</th><th>Spearman ρ</th><th>95 % interval</th><th>p</th>"
        "<th>n</th></tr>"
    ]
    for e, figs in result["rating_vs_figures"].items():
        for f, r in figs.items():
            out.append(
                f"<tr><td>{title(e)}</td><td>{html.escape(FIGURES[f].label)}</td>"
                f"<td class=n>{_fmt(r['spearman_rho'])}</td><td>{_ci(r['ci95'])}</td>"
                f"<td class=n>{_fmt(r['p'], 3)}</td><td class=n>{r['n']}</td></tr>"
            )
    return out


_SHORT = {
    "localization": "Localization",
    "visual_recognizability": "Recognizability",
    "physical_attribution": "Physical attr.",
    "model_transparency": "Transparency",
    "actionability": "Actionability",
}


def _league_rows(result: dict[str, Any]) -> list[str]:
    head = "".join(f"<th title='{title(e)}'>{_SHORT[e]}</th>" for e in ELEMENTS)
    out = [f"<tr><th>model · method</th><th>runs</th>{head}</tr>"]
    for r in result["league"]:
        cells = "".join(
            "<td class=n>–</td>"
            if m["mean"] is None
            else f"<td class=n><b>{m['mean']:.2f}</b><br><span class=muted>{_ci(m['ci95'])}<br>"
            f"n = {m['n']}</span></td>"
            for m in (r["elements"][e] for e in ELEMENTS)
        )
        name = f"{html.escape(r['model'])} · {html.escape(r['method'])}"
        out.append(f"<tr><td>{name}</td><td class=n>{r['runs']}</td>{cells}</tr>")
    return out


def _action_rows(result: dict[str, Any]) -> list[str]:
    head = "".join(f"<th>{a.replace('_', ' ')}</th>" for a in ACTIONS)
    out = [f"<tr><th>model · method</th>{head}<th>actions</th><th>rated with an action</th></tr>"]
    for r in result["league"]:
        shares = "".join(
            f"<td class=n>{'–' if r['actions'][a] is None else format(r['actions'][a], '.0%')}</td>"
            for a in ACTIONS
        )
        rec = "–" if r["action_recorded"] is None else f"{r['action_recorded']:.0%}"
        name = f"{html.escape(r['model'])} · {html.escape(r['method'])}"
        out.append(f"<tr><td>{name}</td>{shares}<td class=n>{r['action_n']}</td><td class=n>{rec}</td></tr>")
    return out


def _warnings(result: dict[str, Any]) -> list[str]:
    c, out = result["counts"], []
    for reader, n in c.get("same_name", {}).items():
        out.append(
            f"<p><b>Check the readers:</b> '{html.escape(reader)}' rated {n} runs in more than one "
            "file (one person on two machines, or two people with one name?).</p>"
        )
    if c.get("evidence_conflicts"):
        out.append(
            f"<p class=muted>{c['evidence_conflicts']} evidence figures differed between the files "
            "(a stochastic method run twice); the first file's values are used.</p>"
        )
    return out


def report_html(result: dict[str, Any], *, name: str = "Reader study") -> str:
    """The analysis (:func:`~.analysis.analyze_study`'s result) as one HTML page."""
    c, s = result["counts"], result["settings"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(name)}: analysis</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(name)}: analysis</h1>",
        f"<p>{c['runs']} runs on {c['cases']} cases, {len(c['readers'])} readers "
        f"({html.escape(', '.join(c['readers']))}), {c['ratings']} current ratings "
        f"({c['not_applicable']} not applicable), {c['actions']} actions. "
        f"<span class=muted>Files: {html.escape(', '.join(result['study_files']))}</span></p>",
        *_warnings(result),
        "<h2>Ratings per element</h2>",
        _distribution_plot(result),
        "<h2>Agreement between readers</h2>",
        f"<p class=muted>{html.escape(s['alpha'])}; interval: {html.escape(s['ci95'])}. Not applicable "
        "counts as missing. Krippendorff suggests 0.8 for reliable and 0.667 for tentative conclusions.</p>",
        _agreement_plot(result),
        "<table>",
        *_agreement_rows(result),
        "</table>",
        f"<h3>Each pair of readers: Cohen's kappa ({html.escape(s['kappa_weights'])} weights)</h3><table>",
        *_kappa_rows(result),
        "</table>",
        "<h3>The same reader twice</h3>",
    ]
    if result["intra_reader"]:
        parts += ["<table>", *_intra_rows(result), "</table>"]
    else:
        gap = s["repeat_gap_s"] / 3600
        parts.append(f"<p class=muted>No reader rated a run twice at least {gap:g} h apart.</p>")
    parts += [
        "<h2>Ratings against the automatic figures</h2>",
        f"<p class=muted>Each run's mean rating against each figure of the same element; "
        f"interval: {html.escape(s['spearman_ci95'])}.</p>",
        _scatter_plot(result),
        "<table>",
        *_figure_rows(result),
        "</table>",
        "<h2>League table: model × method</h2>",
        "<p class=muted>Mean rating (1–5), best first, with its 95 % interval (bootstrap over runs) "
        "and the number of ratings.</p><table>",
        *_league_rows(result),
        "</table>",
        "<h3>What the readers did</h3>",
        "<p class=muted>Share of each action among the recorded ones; the share of rated "
        "(run, reader) pairs where the reader recorded an action.</p><table>",
        *_action_rows(result),
        "</table></body></html>",
    ]
    return "\n".join(parts)


def write_report(result: dict[str, Any], path: str | os.PathLike[str], *, name: str = "Reader study") -> Path:
    """Write :func:`report_html` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(result, name=name), encoding="utf-8")
    return path
