"""npe2 writers: image and labels layers -> NIfTI / MHA / NRRD in their LPS geometry.

Overlay layers too: a heatmap layer holds the map divided by its display scale, so the
writer multiplies it back and the file holds the attribution values; a top-k contour is
a labels layer. Both land on the scan's grid (same ``index_to_lps``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .io import save
from .io.formats import image_suffix

__all__ = ["write_image", "write_labels"]


def _write(path: str, data: Any, meta: dict[str, Any], *, labels: bool) -> list[str]:
    from .overlays import layer_volume
    from .overlays.roles import Role, role_of, scale_of, state_metadata

    if image_suffix(path) is None:
        path = f"{path}.nii.gz"
    volume = layer_volume(data, meta)
    array = volume.array
    layer_meta = state_metadata(meta)
    scale = scale_of(layer_meta)
    if not labels and role_of(layer_meta) is Role.HEATMAP and scale:
        # the layer shows map / scale (see overlays.explanation_layers); write the map itself
        array = (np.asarray(array, dtype=np.float32) * np.float32(scale)).astype(np.float32)
        volume = replace(volume, array=array)
    if labels:
        if array.dtype.kind not in "iub":
            array = array.astype(np.int32)
        if array.dtype.kind in "iub" and array.size and array.min() >= 0 and array.max() < 256:
            array = array.astype(np.uint8)
        volume = replace(volume, array=array, modality="SEG")
    return [str(save(volume, path))]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save an image layer; its affine (world = LPS mm) becomes the file's geometry."""
    return _write(path, data, meta, labels=False)


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a labels layer as an integer label map in its geometry."""
    return _write(path, data, meta, labels=True)
