"""The cohort report: key slices through the true peak, the model card as HTML, figures by name.

The batch folder is written by hand here (``batch.json``, ``cases/<key>/case.json``, the map
as NIfTI and its sidecar, the format :func:`~napari_mlmi_interp.cohort.run_batch` writes), so
the map's peak, its grid and the figures' settings are known exactly.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_mlmi_interp.cohort.report import (
    TICK_COLOUR,
    figure_label,
    render_key_slices,
    render_markdown,
    write_report,
)
from napari_mlmi_interp.framework import map_evidence
from napari_mlmi_interp.framework.evidence import FIGURES
from napari_mlmi_interp.framework.settings import DEFAULT_TOPK_PERCENT
from napari_mlmi_interp.io import save
from napari_mlmi_interp.io.volume import Geometry, Volume

# array axes: 0 -> inferior, 1 -> right, 2 -> posterior; anisotropic spacing, an odd origin
DIRECTION = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], dtype=float)
GEOMETRY = Geometry((24, 30, 36), (2.5, 1.25, 0.8), (37.2, -81.9, 12.3), DIRECTION)
PEAK = (5, 22, 27)  # far from the centre (12, 15, 18)
PLATEAU = (slice(12, 22), slice(2, 12), slice(3, 14))  # saturated block sharing no slice with PEAK
TROUGH = (18, 8, 30)  # a signed map's strongest negative voxel: evidence against, not the peak


class _Page(HTMLParser):
    """Visible text, every tag's attributes, and the text inside chosen tags."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inside: dict[str, list[str]] = {}
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "br", "meta", "hr"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        if "style" in self._stack or "title" in self._stack:
            return
        self.text.append(data)
        for tag in set(self._stack):
            self.inside.setdefault(tag, []).append(data)

    @property
    def visible(self) -> str:
        return " ".join("".join(self.text).split())


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _known_map(signed: bool) -> np.ndarray:
    """A blob whose single largest voxel is PEAK (value 10) and a plateau that the 99.5th-
    percentile clip saturates, so a clipped argmax ties; a signed map also has a trough of
    -15 at TROUGH, where a largest-|value| rule would put its peak."""
    idx = np.indices(GEOMETRY.shape).reshape(3, -1).T
    d = np.linalg.norm(GEOMETRY.to_lps(idx) - GEOMETRY.to_lps(PEAK), axis=1).reshape(GEOMETRY.shape)
    blob = 10.0 * np.exp(-((d / 3.0) ** 2))
    blob[blob < 0.05] = 0.0
    amap = blob.astype(np.float32)
    amap[PLATEAU] = 9.0
    if signed:
        amap[TROUGH] = -15.0
    return amap


def _scan() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(100, 5, GEOMETRY.shape).astype(np.float32)


def _expected_spl(index) -> tuple[int, int, int]:
    """Index of a voxel along S, P and L counted from the grid's most R, A, I voxel: from
    physical positions only (valid for this axis-aligned grid)."""
    corners = GEOMETRY.to_lps(np.array(np.meshgrid(*[[0, n - 1] for n in GEOMETRY.shape])).reshape(3, -1).T)
    low = corners.min(axis=0)
    spacing_lps = np.abs(DIRECTION * np.array(GEOMETRY.spacing)[None, :]).sum(axis=1)  # (L, P, S) mm
    lps = GEOMETRY.to_lps(index)
    l_, p_, s_ = np.rint((lps - low) / spacing_lps).astype(int)
    return int(s_), int(p_), int(l_)


def test_fixture_traps_the_clipped_argmax():
    """The old rule (argmax after clipping at the 99.5th percentile) lands on the plateau."""
    amap = _known_map(False)
    scale = np.percentile(amap[amap > 0], 99.5)
    clipped = np.clip(amap / scale, 0, 1)
    assert clipped[PEAK] == 1.0 and clipped[PLATEAU].min() == 1.0  # both saturate
    assert int(np.argmax(amap)) == int(np.ravel_multi_index(PEAK, amap.shape))
    assert np.unravel_index(int(np.argmax(clipped)), amap.shape) != PEAK


@pytest.mark.parametrize("signed", [False, True])
def test_key_slices_pass_through_the_true_peak(signed):
    scan = Volume(_scan(), GEOMETRY)
    view = render_key_slices(scan, scan.with_array(_known_map(signed)), signed=signed)
    assert view.index == PEAK
    np.testing.assert_allclose(view.lps_mm, GEOMETRY.to_lps(PEAK), atol=1e-9)
    assert view.value == pytest.approx(10.0)
    s, p, l_ = _expected_spl(PEAK)
    assert view.slices == {"axial": s, "coronal": p, "sagittal": l_}

    strip = np.asarray(Image.open(io.BytesIO(view.png)).convert("RGB")).astype(int)
    height, width = strip.shape[:2]
    axis = np.abs(DIRECTION).argmax(axis=1)  # the array axis along L, P and S
    n_l, n_p, n_s = (GEOMETRY.shape[a] for a in axis)
    sp_l, sp_p, sp_s = (GEOMETRY.spacing[a] for a in axis)
    # panel widths follow the physical aspect: axial L x P, coronal L x S, sagittal P x S
    widths = [
        round(height * n_l * sp_l / (n_p * sp_p)),
        round(height * n_l * sp_l / (n_s * sp_s)),
        round(height * n_p * sp_p / (n_s * sp_s)),
    ]
    assert sum(widths) + 12 == width
    starts = [0, widths[0] + 6, widths[0] + widths[1] + 12]
    # where the peak must appear in each panel (row, column), radiological convention
    expected = [
        ((p + 0.5) / n_p, (l_ + 0.5) / n_l),  # axial: anterior up, patient's left on the right
        ((n_s - 1 - s + 0.5) / n_s, (l_ + 0.5) / n_l),  # coronal: superior up, left on the right
        ((n_s - 1 - s + 0.5) / n_s, (p + 0.5) / n_p),  # sagittal: superior up, anterior left
    ]
    tick = np.all(np.abs(strip - np.array(TICK_COLOUR)) < 40, axis=-1)
    heat = strip[..., 0] - strip[..., 2] > 60  # positive evidence is red in both colormaps
    heat &= ~tick
    for start, w, (fy, fx) in zip(starts, widths, expected, strict=True):
        y, x = fy * height, fx * w
        panel_heat = heat[10:-10, start + 10 : start + w - 10]  # away from the edge ticks
        ys, xs = np.nonzero(panel_heat)
        assert ys.size > 20  # the blob around the peak is drawn on this slice...
        assert abs(ys.mean() + 10 - y) < 8 and abs(xs.mean() + 10 - x) < 8  # ...centred on it
        # the ticks on the top and left edges point at the peak
        top = np.nonzero(tick[:4, start : start + w].any(axis=0))[0]
        left = np.nonzero(tick[:, start : start + 4].any(axis=1))[0]
        assert abs(top.mean() - x) < 2 and abs(left.mean() - y) < 2
    # this peak is right of, posterior to and above the field's centre: on the viewer's left
    # (axial, coronal), low on the axial (anterior up), high on the coronal (superior up)
    assert GEOMETRY.to_lps(PEAK)[0] < GEOMETRY.to_lps((np.array(GEOMETRY.shape) - 1) / 2)[0]
    assert expected[0][1] < 0.5 and expected[1][1] < 0.5 and expected[0][0] > 0.5 and expected[1][0] < 0.5


def _batch(tmp_path, *, signed: bool, percent: float | None, anonymise: bool = False):
    """A one-case batch folder holding the known map, its scan and real figures."""
    method = "integrated_gradients" if signed else "gradcam"
    out = tmp_path / "batch"
    case = out / "cases" / "case-0001"
    case.mkdir(parents=True)
    scan = Volume(_scan(), GEOMETRY)
    amap = scan.with_array(_known_map(signed))
    save(scan, tmp_path / "scan.nii.gz")
    save(amap, case / f"{method}.nii.gz")
    roi = np.zeros(GEOMETRY.shape, bool)
    roi[3:8, 19:26, 23:31] = True
    evidence = map_evidence(amap, roi=roi, scan=scan, percent=percent or DEFAULT_TOPK_PERCENT)
    metrics = evidence.to_dict()
    metrics.pop("curves")
    if percent is None:
        metrics.pop("settings")  # an older sidecar: the report falls back to the default k
    peak = [round(float(v), 3) for v in GEOMETRY.to_lps(PEAK)]
    prediction = {"predicted": "lesion", "probabilities": {"no lesion": 0.1, "lesion": 0.9}}
    (case / f"{method}.json").write_text(
        json.dumps({"method": method, "signed": signed, "peak_lps_mm": peak, "metrics": metrics})
    )
    figures = {k: f.to_dict()["value"] for k, f in evidence.figures.items()}
    record = {
        "case": "case-0001",
        "case_id": "pseudo-0001",
        "status": "ok",
        "methods": {
            method: {
                "map": str(case / f"{method}.nii.gz"),
                "prediction": prediction,
                "peak_lps_mm": peak,
                "figures": figures,
                "bands": {k: f.band for k, f in evidence.figures.items()},
            }
        },
    }
    (case / "case.json").write_text(json.dumps(record))
    config = {"model": "lesion-classifier", "methods": [method], "target": None, "order": ["case-0001"]}
    (out / "batch.json").write_text(json.dumps(config))
    if not anonymise:  # case files hold no paths; the summary's input column does
        (out / "summary.csv").write_text(f"case,input\ncase-0001,{tmp_path / 'scan.nii.gz'}\n")
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_report_caption_and_slices_agree_with_the_peak(tmp_path, signed):
    out = _batch(tmp_path, signed=signed, percent=2.5)
    page = _parse(write_report(out, tmp_path / "report.html").read_text())
    (img,) = [attrs for tag, attrs in page.tags if tag == "img"]
    assert img["data-peak-index"] == ", ".join(str(i) for i in PEAK)
    s, p, l_ = _expected_spl(PEAK)
    drawn = tuple(int(img[f"data-slice-{plane}"]) for plane in ("axial", "coronal", "sagittal"))
    assert drawn == (s, p, l_)
    caption = " ".join("".join(page.inside["figcaption"]).split())
    lps = GEOMETRY.to_lps(PEAK)  # (-... , ..., ...) mm: independent of the report's code
    where = "(" + ", ".join(f"{v:.2f}" for v in lps) + ")"
    assert f"voxel ({PEAK[0]}, {PEAK[1]}, {PEAK[2]})" in caption
    assert f"LPS {where} mm" in caption
    assert "largest value" in caption
    heading = " ".join("".join(page.inside["h3"]).split())
    assert f"peak at LPS {where} mm" in heading
    numbers = [float(x) for x in where.strip("()").split(", ")]
    np.testing.assert_allclose(numbers, lps, atol=0.005 + 1e-9)
    # the picture on the page is the one drawn through that voxel
    (png,) = [a["src"].split(",", 1)[1] for t, a in page.tags if t == "img"]
    scan = Volume(_scan(), GEOMETRY)
    view = render_key_slices(scan, scan.with_array(_known_map(signed)), signed=signed)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")).astype(int)
    expected = np.asarray(Image.open(io.BytesIO(view.png)).convert("RGB")).astype(int)
    assert (
        decoded.shape == expected.shape and np.abs(decoded - expected).max() <= 2
    )  # NIfTI float32 round trip


def test_anonymised_batch_still_gets_slices_through_the_peak(tmp_path):
    out = _batch(tmp_path, signed=False, percent=2.5, anonymise=True)
    page = _parse(write_report(out, tmp_path / "report.html").read_text())
    (img,) = [attrs for tag, attrs in page.tags if tag == "img"]
    assert img["data-peak-index"] == ", ".join(str(i) for i in PEAK)
    assert "No scan behind the map" in page.visible and str(tmp_path) not in page.visible


def test_report_names_figures_with_definitions_and_k(tmp_path):
    out = _batch(tmp_path, signed=False, percent=2.5)
    page = _parse(write_report(out, tmp_path / "report.html").read_text())
    visible = page.visible
    for key in [*FIGURES, "visual_recognizability", "physical_attribution", "model_transparency"]:
        if "_" in key:
            assert key not in visible, key
    assert "top-2.5 % Dice" in visible and "top-2.5 % IoU" in visible and "top-k" not in visible
    assert "relevance mass" in visible and "Grad-CAM" in visible
    titles = {a["title"] for t, a in page.tags if t == "td" and a.get("title")}
    assert any(t.startswith("Dice overlap of the top-2.5 % most attributed voxels") for t in titles)
    assert any("Unit: mm." in t for t in titles)  # peak to region carries its unit
    assert "peak to region" in visible and "mm" in visible
    assert "Dice overlap of the top-2.5 % most attributed voxels" in visible  # the legend


def test_report_falls_back_to_the_default_k(tmp_path):
    out = _batch(tmp_path, signed=False, percent=None)
    visible = _parse(write_report(out, tmp_path / "report.html").read_text()).visible
    assert f"top-{DEFAULT_TOPK_PERCENT:g} % Dice" in visible
    assert figure_label("topk_iou", topk_percent=5)[0] == "top-5 % IoU"
    assert figure_label("some_new_figure")[0] == "some new figure"


def test_report_renders_the_whole_model_card(tmp_path):
    from napari_mlmi_interp.models import resolve_model

    card = Path(resolve_model("lesion-classifier").spec.card).read_text(encoding="utf-8")
    last = " ".join(card.strip().rsplit(". ", 1)[-1].split())  # "Not a medical device; ... decisions."
    out = _batch(tmp_path, signed=False, percent=2.5)
    page = _parse(write_report(out, tmp_path / "report.html").read_text())
    assert last in page.visible
    assert "python sample_data/train_zoo.py" in page.inside["code"]
    assert "**" not in page.visible and "`" not in page.visible  # rendered, not raw Markdown


def test_markdown_card_renders_elements_and_escapes_html():
    text = (
        "# Card\n\nRun `python train.py --seed 1` first.\n\n"
        "| split | AUROC |\n| --- | --- |\n| test | 0.99 |\n\n"
        "- one\n- two <script>alert(1)</script>\n\n"
        "Not a medical device; never use it on patient data."
    )
    rendered = render_markdown(text)
    page = _parse(rendered)
    tags = [t for t, _ in page.tags]
    assert {"code", "table", "th", "td", "ul", "li", "h3"} <= set(tags)  # '#' moved two levels down
    assert "script" not in tags and "&lt;script&gt;" in rendered
    assert page.inside["code"] == ["python train.py --seed 1"]
    assert page.inside["th"] == ["split", "AUROC"] and page.inside["td"] == ["test", "0.99"]
    assert page.visible.endswith("Not a medical device; never use it on patient data.")


def test_wrong_inputs_are_the_users_error(tmp_path):
    from napari_mlmi_interp.errors import InputError

    scan = Volume(_scan(), GEOMETRY)
    amap = Volume(np.zeros((4, 5, 6), np.float32), Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3)))
    with pytest.raises(InputError, match="the map must be on the scan's grid"):
        render_key_slices(scan, amap)
    with pytest.raises(InputError, match="not a batch result folder"):
        write_report(tmp_path, tmp_path / "report.html")
