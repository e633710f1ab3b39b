"""The one-command demo: sample scan, demo classifier, Grad-CAM and IG overlays, prototype panel.

``mlmi-interp demo`` calls :func:`run_demo`. With a screenshot path it renders (under a
virtual display when there is none), writes the PNGs and a results JSON, and closes;
otherwise napari stays open for the reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SIZE = (1500, 950)


def _distance_mm(volume, mask: np.ndarray, lps: np.ndarray) -> float:
    idx = np.argwhere(mask > 0)
    return float(np.sqrt(((volume.geometry.to_lps(idx) - lps) ** 2).sum(axis=1)).min())


def build_demo(viewer, study_path: str | Path | None = None) -> dict[str, Any]:
    """Fill ``viewer``: scan, lesion mask, Grad-CAM and IG overlays, Explain, prototype and
    framework panels (the sidebar judges Grad-CAM against the lesion mask, model evidence
    included; ratings go to ``study_path``, a temporary file by default).

    Returns the widgets, layers and a JSON-ready summary.
    """
    from ..overlays import set_radiological_view
    from ..sample import LESION_CENTRE_LPS, make_sample

    sample = make_sample()
    scan_layer, mask_layer = _add_sample(viewer, sample)
    if study_path is None:
        import tempfile

        study_path = Path(tempfile.mkdtemp(prefix="mlmi-demo-")) / "demo_study.sqlite"
    panels = _add_panels(viewer, study_path)
    # the contour, the sidebar and `evaluate` all use the shared top-k % (framework.settings):
    # the top 1 % (about 9,000 voxels, 70 mL) outlines the strongest evidence
    summary: dict[str, Any] = {"lesion_centre_lps_mm": list(LESION_CENTRE_LPS)}
    layers, summary["explanations"] = _explain_sample(panels["explain_widget"], sample, scan_layer)
    summary["prototypes"] = _show_prototypes(panels["prototype_widget"], sample, scan_layer)
    # the sidebar judges Grad-CAM against the lesion mask (the reader's true region)
    sidebar = panels["sidebar"]
    sidebar.select(layers["gradcam"]["heatmap"])
    sidebar.select_region(mask_layer)
    assessment = sidebar.assess_now(with_model=True)
    summary["framework"] = {
        "explanation": layers["gradcam"]["heatmap"].name,
        "goal": sidebar.goal.to_dict(),
        "evidence": assessment.to_dict() if assessment is not None else None,
        "study_file": str(study_path),
    }
    set_radiological_view(viewer, "axial")
    viewer.dims.point = tuple(float(c) for c in LESION_CENTRE_LPS)
    viewer.layers.selection.active = layers["gradcam"]["heatmap"]
    return {**panels, "summary": summary, "layers": layers, "scan_layer": scan_layer, "sample": sample}


def _add_sample(viewer, sample) -> tuple[Any, Any]:
    """The sample scan and its lesion mask (hidden: the truth is one click away)."""
    from ..overlays import add_layer, volume_layer_data

    scan_layer = add_layer(viewer, volume_layer_data(sample.scan))
    mask_layer = add_layer(
        viewer, volume_layer_data(sample.mask, layer_type="labels", opacity=0.35, name="lesion mask (truth)")
    )
    mask_layer.visible = False  # the reader compares the overlays with the anatomy
    return scan_layer, mask_layer


def _add_panels(viewer, study_path: str | Path) -> dict[str, Any]:
    """The Explain, prototype and framework panels, docked right, the sidebar's tab in front."""
    from .explain_widget import ExplainWidget
    from .prototype_widget import PrototypeWidget
    from .sidebar import FrameworkSidebar

    explain_widget = ExplainWidget(viewer)
    proto_widget = PrototypeWidget(viewer)
    sidebar = FrameworkSidebar(viewer, study_path=study_path, reader="demo")
    sidebar_dock = viewer.window.add_dock_widget(sidebar, name="Interpretability framework", area="right")
    viewer.window.add_dock_widget(explain_widget, name="Explain", area="right", tabify=True)
    viewer.window.add_dock_widget(proto_widget, name="Prototypes", area="right", tabify=True)
    sidebar_dock.raise_()
    return {
        "sidebar": sidebar,
        "sidebar_dock": sidebar_dock,
        "explain_widget": explain_widget,
        "prototype_widget": proto_widget,
    }


def _explain_sample(explain_widget, sample, scan_layer) -> tuple[dict[str, Any], list[dict]]:
    """Integrated Gradients, then Grad-CAM on top: their layers, and each one's summary."""
    from ..explain import explain
    from ..models.held import held_models

    classifier = held_models().resolve("lesion-classifier")
    model_input = None
    layers, summaries = {}, []
    for method in ("integrated_gradients", "gradcam"):
        result = explain(sample.scan, classifier, method, target="lesion", model_input=model_input)
        model_input = result.prediction.model_input
        layers[method] = explain_widget.show_result(result, scan_layer.name, model=classifier)
        peak_mm = _distance_mm(sample.scan, sample.mask.array, result.peak_lps())
        summaries.append({**result.summary(), "peak_to_lesion_mm": round(peak_mm, 2)})
    for layer in layers["integrated_gradients"].values():
        layer.visible = False  # Grad-CAM on top; IG one click away (or use Compare)
    return layers, summaries


def _show_prototypes(proto_widget, sample, scan_layer) -> dict[str, Any]:
    """The prototype network's report for the predicted class, listed in the panel."""
    from ..explain import prototype_report
    from ..models.held import held_models

    protonet = held_models().resolve("lesion-protonet")
    # the predicted class's prototypes (the panel's class box lists the other class's)
    report = prototype_report(sample.scan, protonet, top=5)
    proto_widget.set_report(report, scan_layer.name, model=protonet)
    return {
        "model": protonet.spec.name,
        "prediction": report.prediction.to_dict(),
        "target": report.target_name,
        "top": [m.summary() for m in report.matches],
    }


def run_demo(out_dir: str | Path, screenshot: str | Path | None = None) -> dict[str, Any]:
    """Open the demo; with ``screenshot``, write PNGs (2D, 3D, prototype panel) and close.

    Returns the summary written to ``<out_dir>/demo_results.json``.
    """
    import napari

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-mlmi-interp demo", show=True)
    viewer.window.resize(*SIZE)
    demo = build_demo(viewer, study_path=out / "demo_study.sqlite")
    summary = demo["summary"]
    if screenshot is None:
        (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
        napari.run()
        return summary
    shot = Path(screenshot)
    shot.parent.mkdir(parents=True, exist_ok=True)
    summary["screenshots"] = save_screenshots(viewer, demo, shot)
    (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
    demo["sidebar"].shutdown()
    viewer.close()
    return summary


def save_screenshots(viewer, demo: dict[str, Any], shot: Path) -> dict[str, str]:
    """The 2D view (whole window), the 3D view with the isosurface, the prototype panel."""
    from qtpy.QtWidgets import QApplication

    from ..overlays import set_radiological_view
    from ..overlays.orientation import look_from_anterior
    from ..overlays.roles import Role, layers_of

    paths = {}
    QApplication.processEvents()
    demo["sidebar_dock"].raise_()  # the sidebar's tab in front (once the docks have settled)
    QApplication.processEvents()
    image = viewer.screenshot(str(shot), canvas_only=False, flash=False)
    if image is None or not np.any(np.asarray(image)[..., :3]):
        from .._viewer import DisplayError

        raise DisplayError("the screenshot is blank: no OpenGL rendering (is a display present?)")
    paths["2d"] = str(shot)

    surface = demo["layers"]["gradcam"].get("surface")
    heat = demo["layers"]["gradcam"]["heatmap"]
    contour = demo["layers"]["gradcam"]["contour"]
    viewer.dims.ndisplay = 3  # dims order the identity, contours give way to their surfaces
    for other in layers_of(viewer, Role.ISOSURFACE):  # Grad-CAM's alone, as the caption says
        other.visible = other is surface
    if surface is not None:
        surface.visible = True
        # drawn over the semi-transparent brain, not hidden in it by the volume's depth
        surface.blending, surface.opacity = "translucent_no_depth", 0.9
    heat.visible = contour.visible = False
    scan = demo["scan_layer"]
    scan.rendering = "attenuated_mip"
    scan.attenuation = 0.08
    scan.opacity = 0.35
    viewer.reset_view()  # resets the camera's angles too: set them after
    look_from_anterior(viewer)  # the standard view: the lesion on the same side as in 2D
    QApplication.processEvents()
    three_d = shot.with_name(shot.stem + "_3d" + shot.suffix)
    viewer.screenshot(str(three_d), canvas_only=True, flash=False)
    paths["3d"] = str(three_d)
    viewer.dims.ndisplay = 2
    if surface is not None:
        surface.blending, surface.opacity = "translucent", 0.7
    scan.rendering, scan.opacity = "mip", 1.0
    heat.visible = contour.visible = True
    if surface is not None:
        surface.visible = False
    set_radiological_view(viewer, "axial")

    panel = shot.with_name(shot.stem + "_prototypes" + shot.suffix)
    widget = demo["prototype_widget"]
    widget.resize(640, 760)  # five rows of 96-pixel thumbnails and their text
    widget.grab().save(str(panel))
    paths["prototypes"] = str(panel)

    paths["sidebar"] = save_sidebar(demo, shot)
    return paths


def save_sidebar(demo: dict[str, Any], shot: Path) -> str:
    """The whole sidebar, every card open, as ``<shot>_sidebar.png``: float its dock, make it
    tall, grab, dock it again. Returns the path."""
    from qtpy.QtWidgets import QApplication

    sidebar_png = shot.with_name(shot.stem + "_sidebar" + shot.suffix)
    dock = demo["sidebar_dock"]
    dock.setFloating(True)
    dock.resize(520, 2000)
    QApplication.processEvents()
    demo["sidebar"].grab().save(str(sidebar_png))
    dock.setFloating(False)
    dock.raise_()
    QApplication.processEvents()
    return str(sidebar_png)
