"""npe2 sample data: the brain MR with a synthetic lesion and its ground-truth mask, the
shortcut case, and a real T1 (brainchop's, for the real models in the zoo).

Open Sample shows the scan as ``mlmi-interp view`` does: axial, anterior up, the patient's
left on the viewer's right, at the middle slice (:func:`.overlays.volume_layers.arrange_when_added`).
"""

from __future__ import annotations

__all__ = ["real_t1", "sample_brain", "shortcut_case"]


def _scan_and_mask(scan, mask) -> list[tuple]:
    from .overlays.volume_layers import arrange_when_added, volume_layer_data

    layers = [volume_layer_data(scan), volume_layer_data(mask, layer_type="labels", opacity=0.4)]
    arrange_when_added(scan)
    return layers


def sample_brain() -> list[tuple]:
    """Layers: the scan (image) and the lesion mask (labels), both in LPS millimetres."""
    from .sample import make_sample

    sample = make_sample()
    return _scan_and_mask(sample.scan, sample.mask)


def shortcut_case() -> list[tuple]:
    """Layers: a synthetic brain with a lesion and a burned-in tag, and the lesion mask."""
    from .synthetic import make_shortcut_case

    case = make_shortcut_case()
    scan = case.scan
    scan.name = "shortcut case (tagged)"
    mask = case.mask
    mask.name = "shortcut case lesion mask"
    return _scan_and_mask(scan, mask)


def real_t1() -> list[tuple]:
    """Layers: the real T1 (256³, 1 mm, FreeSurfer-conformed) as an image in LPS millimetres."""
    from .overlays.volume_layers import arrange_when_added, volume_layer_data
    from .sample import load_real_t1

    scan = load_real_t1()
    arrange_when_added(scan)
    return [volume_layer_data(scan)]
