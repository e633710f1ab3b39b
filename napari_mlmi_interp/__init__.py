"""napari-mlmi-interp: interpretability for medical-imaging ML, in napari.

Importing the package is cheap: it loads neither napari, Qt, torch nor SimpleITK.
Pure compute lives in :mod:`napari_mlmi_interp.io` (and later ``models``,
``explain``, ``metrics``, ``framework``, ``store``); napari adapters live in
``overlays`` and the ``_reader``/``_writer``/``_sample_data`` modules.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-mlmi-interp")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
