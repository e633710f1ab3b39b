"""npe2 sample data: the brain MR with a synthetic lesion and its ground-truth mask."""

from __future__ import annotations

__all__ = ["sample_brain", "shortcut_case"]


def sample_brain() -> list[tuple]:
    """Layers: the scan (image) and the lesion mask (labels), both in LPS millimetres."""
    from .overlays import volume_layer_data
    from .sample import make_sample

    sample = make_sample()
    return [
        volume_layer_data(sample.scan),
        volume_layer_data(sample.mask, layer_type="labels", opacity=0.4),
    ]


def shortcut_case() -> list[tuple]:
    """Layers: a synthetic brain with a lesion and a burned-in tag, and the lesion mask."""
    from .overlays import volume_layer_data
    from .synthetic import make_shortcut_case

    case = make_shortcut_case()
    scan = case.scan
    scan.name = "shortcut case (tagged)"
    mask = case.mask
    mask.name = "shortcut case lesion mask"
    return [volume_layer_data(scan), volume_layer_data(mask, layer_type="labels", opacity=0.4)]
