"""Loaders for the model formats users already have, each returning the same
:class:`~napari_mlmi_interp.models.loading.LoadedModel` (TorchScript, state_dict and TF.js are in
:mod:`..loading` and :mod:`..tfjs`): MONAI bundles (:mod:`.bundle`), ``torch.export`` programs
(:mod:`.exported`) and ONNX (:mod:`.onnx`, an optional extra)."""

from __future__ import annotations
