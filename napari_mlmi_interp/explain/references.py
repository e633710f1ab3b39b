"""Nearest reference cases in a model's feature space ("this case resembles those").

For models without prototypes: a *reference library* is a folder of scans (any format
:func:`napari_mlmi_interp.io.load` reads). It is indexed once per model: every scan goes
through the model's own preprocessing, and its feature vector is the global average of the
model's first ``cam_layers`` activation (or, without one, of its output), L2-normalised. The
index (``.mlmi-references-<model sha>.npz`` in the folder) holds the vectors, the model's
prediction and three orthogonal thumbnails per case; it is rebuilt when the folder's scans
change. A query ranks the library by cosine similarity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import LoadError, load
from ..io.volume import Volume
from ..models.loading import LoadedModel
from ..models.predict import predict, preprocessor_for

__all__ = ["ReferenceLibrary", "ReferenceMatch", "index_path"]

_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


@dataclass
class ReferenceMatch:
    """One reference case: where it is, how similar, what the model said of it."""

    path: str
    case_id: str
    similarity: float
    predicted: str
    probability: float | None
    thumbnails: np.ndarray  # (3, 32, 32): axial, coronal, sagittal through the model input's centre

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "case_id": self.case_id,
            "similarity": round(self.similarity, 5),
            "predicted": self.predicted,
            "probability": None if self.probability is None else round(self.probability, 5),
        }


def index_path(folder: str | Path, model: LoadedModel) -> Path:
    """Where the index of ``folder`` for ``model`` lives."""
    return Path(folder) / f".mlmi-references-{model.sha256[:16]}.npz"


def _scans(folder: Path) -> list[Path]:
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower().endswith(_SUFFIXES)]
    dicom_dirs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return files + dicom_dirs


def _thumbnails(array: np.ndarray, size: int = 32) -> np.ndarray:
    """Axial, coronal, sagittal slices through the centre of a (z, y, x) array, resized."""
    from scipy.ndimage import zoom

    cz, cy, cx = (s // 2 for s in array.shape)
    views = [array[cz], array[:, cy], array[:, :, cx]]
    return np.stack([zoom(v, (size / v.shape[0], size / v.shape[1]), order=1)[:size, :size] for v in views])


def _features(model: LoadedModel, x: Any) -> np.ndarray:
    import torch

    module = model.module
    layers = dict(module.named_modules())
    name = model.spec.cam_layers[0] if model.spec.cam_layers else None
    seen: dict[str, Any] = {}
    handle = None
    if name in layers:
        handle = layers[name].register_forward_hook(lambda _m, _i, out: seen.setdefault("a", out))
    try:
        with torch.inference_mode():
            out = module(x)
    finally:
        if handle is not None:
            handle.remove()
    a = seen.get("a", out)
    a = a[0] if isinstance(a, (tuple, list)) else a
    v = a.float().flatten(2).mean(dim=2)[0] if a.dim() > 2 else a.float()[0]
    v = v.numpy().astype(np.float64)
    return v / max(np.linalg.norm(v), 1e-12)


class ReferenceLibrary:
    """A folder of reference scans, indexed for one model.

    Parameters
    ----------
    folder : path
        Scans (NIfTI, MHA, NRRD files, or DICOM series folders) at its top level.
    model : LoadedModel
        Classification model whose feature space is searched.
    """

    def __init__(self, folder: str | Path, model: LoadedModel) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: the reference library must be a folder of scans")
        self.model = model
        self.entries: list[dict[str, Any]] = []
        self.vectors = np.zeros((0, 0))
        self.thumbnails = np.zeros((0, 3, 32, 32), np.float32)
        self.skipped: list[str] = []

    def build(self, progress=None, *, force: bool = False) -> ReferenceLibrary:
        """Index the folder (or read the index when it is up to date); returns self."""
        scans = _scans(self.folder)
        stamp = [[str(p.name), p.stat().st_mtime_ns] for p in scans]
        path = index_path(self.folder, self.model)
        if path.is_file() and not force:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                if meta.get("stamp") == stamp:
                    self.entries, self.skipped = meta["entries"], meta["skipped"]
                    self.vectors, self.thumbnails = npz["vectors"], npz["thumbnails"]
                    return self
        pre = preprocessor_for(self.model)
        entries, vectors, thumbs, skipped = [], [], [], []
        for i, scan in enumerate(scans):
            try:
                volume = load(scan)[0]
            except (LoadError, OSError, ValueError) as exc:
                skipped.append(f"{scan.name}: {exc}")
                continue
            mi = pre.forward(volume)
            pred = predict(volume, self.model, model_input=mi)
            vectors.append(_features(self.model, mi.tensor()))
            thumbs.append(_thumbnails(pre.from_model_axes(mi.array[0])).astype(np.float32))
            probability = None if pred.probabilities is None else float(pred.probabilities[pred.predicted])
            entries.append(
                {
                    "path": str(scan),
                    "case_id": volume.case_id,
                    "predicted": pred.label or "",
                    "probability": probability,
                }
            )
            if progress is not None:
                progress(i + 1, len(scans))
        self.entries, self.skipped = entries, skipped
        self.vectors = np.stack(vectors) if vectors else np.zeros((0, 0))
        self.thumbnails = np.stack(thumbs) if thumbs else np.zeros((0, 3, 32, 32), np.float32)
        meta = {"stamp": stamp, "entries": entries, "skipped": skipped, "model": self.model.spec.name}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, vectors=self.vectors, thumbnails=self.thumbnails, meta=json.dumps(meta))
        tmp.replace(path)
        return self

    def nearest(self, volume: Volume, top: int = 5) -> list[ReferenceMatch]:
        """The ``top`` library cases most similar to ``volume`` (cosine similarity)."""
        if not self.entries:
            raise InputError(f"{self.folder}: no readable scans in the reference library")
        mi = preprocessor_for(self.model).forward(volume)
        query = _features(self.model, mi.tensor())
        sims = self.vectors @ query
        order = np.argsort(-sims)[: max(1, int(top))]
        return [
            ReferenceMatch(
                path=self.entries[i]["path"],
                case_id=self.entries[i]["case_id"],
                similarity=float(sims[i]),
                predicted=self.entries[i]["predicted"],
                probability=self.entries[i]["probability"],
                thumbnails=self.thumbnails[i],
            )
            for i in order
        ]
