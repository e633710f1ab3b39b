"""Bring-your-own 3D PyTorch models: specs, safe loading, invertible preprocessing, prediction.

Pure compute: never imports napari or Qt. torch, MONAI and SimpleITK are imported by the
functions that need them.
"""

from __future__ import annotations

from .loading import LoadedModel, build_architecture, file_sha256, load_model, load_state_dict
from .predict import Prediction, predict, preprocessor_for
from .preprocessing import (
    ModelInput,
    Preprocessor,
    crop_or_pad_grid,
    reorient_grid,
    resample_grid,
    resample_to_grid,
)
from .registry import ENTRY_POINT_GROUP, available_models, builtin_models, entry_point_models, resolve_model
from .spec import InputSpec, ModelError, ModelSpec, Normalization
from .tfjs import TfjsTopology, load_tfjs, read_tfjs_topology, tfjs_sha256

__all__ = [
    "ENTRY_POINT_GROUP",
    "InputSpec",
    "LoadedModel",
    "ModelError",
    "ModelInput",
    "ModelSpec",
    "Normalization",
    "Prediction",
    "Preprocessor",
    "TfjsTopology",
    "available_models",
    "build_architecture",
    "builtin_models",
    "crop_or_pad_grid",
    "entry_point_models",
    "file_sha256",
    "load_model",
    "load_state_dict",
    "load_tfjs",
    "predict",
    "preprocessor_for",
    "read_tfjs_topology",
    "reorient_grid",
    "resample_grid",
    "resample_to_grid",
    "resolve_model",
    "tfjs_sha256",
]
