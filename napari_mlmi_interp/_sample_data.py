"""npe2 sample data: the brain MR with a synthetic lesion and its ground-truth mask."""

from __future__ import annotations

__all__ = ["sample_brain"]


def sample_brain() -> list[tuple]:
    """Layers: the scan (image) and the lesion mask (labels), both in LPS millimetres."""
    from .overlays import volume_layer_data
    from .sample import make_sample

    sample = make_sample()
    return [
        volume_layer_data(sample.scan),
        volume_layer_data(sample.mask, layer_type="labels", opacity=0.4),
    ]
