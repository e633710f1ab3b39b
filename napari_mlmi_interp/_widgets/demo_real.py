"""``mlmi-interp demo --real``: a real trained segmenter on a real T1, judged on five elements.

The real T1 (brainchop's conformed adult T1, 256³ at 1 mm), the model zoo's 50-region
parcellation (``brainchop-aparc50``, brain extraction first) shown as a labels layer, and
an explanation of one structure: the model's *Hippocampus* class inside the left
hippocampus the model itself segmented (its largest connected piece on the patient's
left). The sidebar then judges that map with its true region set to the same structure,
the model's evidence included (deletion and insertion of the region's score, randomisation,
augmentation spread of the segmented volume).

With a screenshot path it renders, writes ``demo_real.png`` (2D, coronal through the
structure) and ``demo_real_sidebar.png`` and a results JSON, and closes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .demo import SIZE, _add_panels, save_sidebar

#: The real model, the structure it explains, the method (cheap at 256³: one backward pass).
REAL_MODEL = "brainchop-aparc50"
STRUCTURE = "Hippocampus"
METHOD = "saliency"


def left_component(labels: np.ndarray, index: int, geometry: Any) -> np.ndarray:
    """The largest connected piece of label ``index`` on the patient's left, as a bool mask.

    Left and right are split at the label's own midline: LPS x (patient left is +x) of each
    piece's centroid against the centroid of all the label's voxels.

    Raises
    ------
    InputError
        When the label is absent or has no piece on the left.
    """
    from scipy import ndimage

    from ..errors import InputError

    mask = labels == index
    if not mask.any():
        raise InputError(f"the segmentation has no voxel of label {index}")
    pieces, n = ndimage.label(mask)
    sizes = np.bincount(pieces.ravel())[1:]
    mid_x = geometry.to_lps(np.argwhere(mask).mean(axis=0)[None])[0, 0]
    best, best_size = 0, 0
    for piece in range(1, n + 1):
        centre = geometry.to_lps(np.argwhere(pieces == piece).mean(axis=0)[None])[0, 0]
        if centre > mid_x and sizes[piece - 1] > best_size:
            best, best_size = piece, int(sizes[piece - 1])
    if best == 0:
        raise InputError(f"label {index} has no connected piece on the patient's left")
    return pieces == best


def build_real_demo(viewer, study_path: str | Path | None = None, *, wait: bool = True) -> dict[str, Any]:
    """Fill ``viewer``: real T1, parcellation, the left hippocampus explained, the sidebar's cards.

    With ``wait`` (headless) the model's figures are computed here, at the effort that fits
    the sidebar's time limit (7 minutes at the brief effort, 256³ on two cores); without it the
    map's figures are shown at once and the model's run in the sidebar's worker, with its
    progress bar and cancel button. Returns the widgets, layers and a JSON-ready summary
    (timings in seconds, volumes in mL).
    """
    from ..framework.guide import Goal
    from ..sample import load_real_t1
    from ..vocabulary import ELEMENTS

    clock: dict[str, float] = {}
    scan = load_real_t1()
    if study_path is None:
        import tempfile

        study_path = Path(tempfile.mkdtemp(prefix="mlmi-demo-real-")) / "demo_real_study.sqlite"
    scan_layer = _add_scan(viewer, scan)
    panels = _add_panels(viewer, study_path)
    model, prediction, parcellation = _parcellate(viewer, scan, clock)
    roi = left_component(parcellation.array, model.spec.classes.index(STRUCTURE), scan.geometry)
    roi_layer = _add_region(viewer, parcellation, roi)
    explain_widget = panels["explain_widget"]
    layers, explanation = _explain_structure(
        explain_widget, scan_layer.name, scan, model, prediction, roi, clock
    )
    sidebar = panels["sidebar"]
    sidebar.set_goal(Goal(task="segmentation", reader="clinician", purpose="verify", elements=ELEMENTS))
    sidebar.select(layers["heatmap"])
    sidebar.select_region(roi_layer)
    start = time.perf_counter()
    assessment = sidebar.assess_now(with_model=wait)
    clock["evidence_s"] = round(time.perf_counter() - start, 2)
    if not wait:
        sidebar.compute_model_evidence()
    _look_at(viewer, scan, roi, layers["heatmap"])
    voxel_ml = scan.geometry.voxel_volume_ml
    summary = {
        "scan": scan.name,
        "model": model.spec.name,
        "structure": f"left {STRUCTURE.lower()}",
        "structure_volume_ml": round(float(roi.sum()) * voxel_ml, 2),
        "label_volumes_ml": {k: round(v, 2) for k, v in prediction.volumes_ml.items()},
        "explanation": {**explanation.summary(), "peak_in_structure": _peak_inside(explanation, roi)},
        "framework": {
            "explanation": layers["heatmap"].name,
            "goal": sidebar.goal.to_dict(),
            "evidence": assessment.to_dict() if assessment is not None else None,
            "study_file": str(study_path),
        },
        "seconds": clock,
    }
    return {**panels, "summary": summary, "layers": layers, "scan_layer": scan_layer, "roi_layer": roi_layer}


def _add_scan(viewer, scan) -> Any:
    from ..overlays import add_layer, volume_layer_data

    return add_layer(viewer, volume_layer_data(scan))


def _parcellate(viewer, scan, clock: dict[str, float]) -> tuple[Any, Any, Any]:
    """The zoo's parcellation of the scan, added as a labels layer (hidden under the map)."""
    from ..models.held import held_models
    from ..models.predict import predict
    from ..overlays import add_layer, volume_layer_data

    start = time.perf_counter()
    model = held_models().resolve(REAL_MODEL)
    clock["load_model_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    prediction = predict(scan, model)
    clock["parcellation_s"] = round(time.perf_counter() - start, 2)
    parcellation = prediction.segmentation
    layer = add_layer(
        viewer,
        volume_layer_data(
            parcellation, layer_type="labels", opacity=0.3, name=f"{model.spec.name} parcellation"
        ),
    )
    layer.visible = False
    return model, prediction, parcellation


def _add_region(viewer, parcellation, roi: np.ndarray) -> Any:
    from ..overlays import add_layer, volume_layer_data

    region = parcellation.with_array(roi.astype(np.uint8), name=f"left {STRUCTURE.lower()} (model)")
    layer = add_layer(viewer, volume_layer_data(region, layer_type="labels", opacity=0.35))
    layer.visible = False  # the map is judged against it; one click shows it
    return layer


def _explain_structure(
    explain_widget, scan_name, scan, model, prediction, roi, clock
) -> tuple[dict[str, Any], Any]:
    """The structure's class score inside its own region, explained by :data:`METHOD`."""
    from ..explain import explain

    start = time.perf_counter()
    result = explain(scan, model, METHOD, target=STRUCTURE, roi=roi, model_input=prediction.model_input)
    clock["explain_s"] = round(time.perf_counter() - start, 2)
    layers = explain_widget.show_result(result, scan_name, model=model)
    return layers, result


def _peak_inside(explanation, roi: np.ndarray) -> bool:
    from ..metrics import peak_index

    return bool(roi[tuple(peak_index(explanation.native.array))])


def _look_at(viewer, scan, roi: np.ndarray, heatmap) -> None:
    """Coronal, radiological, through the structure's centre; the heatmap selected."""
    from ..overlays import set_radiological_view

    set_radiological_view(viewer, "coronal")
    centre = scan.geometry.to_lps(np.argwhere(roi).mean(axis=0)[None])[0]
    viewer.dims.point = tuple(float(c) for c in centre)
    viewer.layers.selection.active = heatmap


def run_real_demo(out_dir: str | Path, screenshot: str | Path | None = None) -> dict[str, Any]:
    """Open the real demo; with ``screenshot``, write the PNGs and close. Returns the summary."""
    import napari
    from qtpy.QtWidgets import QApplication

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-mlmi-interp demo: real model, real T1", show=True)
    viewer.window.resize(*SIZE)
    demo = build_real_demo(viewer, study_path=out / "demo_real_study.sqlite", wait=screenshot is not None)
    summary = demo["summary"]
    if screenshot is None:
        (out / "demo_real_results.json").write_text(json.dumps(summary, indent=2))
        napari.run()
        return summary
    shot = Path(screenshot)
    shot.parent.mkdir(parents=True, exist_ok=True)
    QApplication.processEvents()
    demo["sidebar_dock"].raise_()
    QApplication.processEvents()
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    summary["screenshots"] = {"2d": str(shot), "sidebar": save_sidebar(demo, shot)}
    (out / "demo_real_results.json").write_text(json.dumps(summary, indent=2))
    demo["sidebar"].shutdown()
    viewer.close()
    return summary
