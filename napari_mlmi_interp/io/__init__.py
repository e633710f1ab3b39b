"""Volumes in physical space: DICOM series, NIfTI, MHA/MHD and NRRD.

>>> from napari_mlmi_interp.io import load
>>> volumes = load("path/to/dicom/folder")          # doctest: +SKIP
>>> volumes[0].index_to_lps @ [0, 0, 0, 1]            # doctest: +SKIP

Every :class:`Volume` keeps its array in SimpleITK order ``(z, y, x)`` and knows where
each voxel is in patient LPS millimetres (:attr:`Volume.index_to_lps`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .dicom import find_dicom_files, is_dicom_file, read_dicom
from .dicomweb.url import is_dicomweb_url
from .errors import LoadError, LoadWarning
from .formats import IMAGE_SUFFIXES, image_suffix, read_image, save
from .mask import binary_mask
from .naming import load_warnings, output_stem, safe_name
from .pseudonym import pseudonymize
from .volume import Geometry, Volume

__all__ = [
    "IMAGE_SUFFIXES",
    "Geometry",
    "LoadError",
    "LoadWarning",
    "Volume",
    "binary_mask",
    "can_load",
    "is_dicomweb_url",
    "load",
    "load_warnings",
    "output_stem",
    "pseudonymize",
    "read_dicom",
    "read_image",
    "safe_name",
    "save",
]


def can_load(path: str | os.PathLike[str]) -> bool:
    """Cheap guess whether :func:`load` understands ``path``; never raises, never parses.

    A DICOMweb URL (``http(s)://...``) counts: whether the server has it is :func:`load`'s to say.
    """
    if is_dicomweb_url(path):
        return True
    try:
        p = Path(path)
        if p.is_dir():
            return True
        if not p.is_file():
            return False
        return (
            image_suffix(p) is not None or p.suffix.lower() in (".dcm", ".ima", ".dicom") or is_dicom_file(p)
        )
    except (OSError, ValueError):
        return False


def load(path: str | os.PathLike[str]) -> list[Volume]:
    """Read every volume at ``path``.

    Parameters
    ----------
    path : path-like
        A NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) or NRRD
        (``.nrrd``, ``.nhdr``) file; a DICOM folder (searched recursively, every series);
        or any DICOM file (its folder's series are read). A folder without DICOM files
        but with image files of the formats above loads each of them. Or a DICOMweb
        study or series URL (``http(s)://HOST/.../studies/<uid>[/series/<uid>]``): its
        instances are retrieved into a cache and read as a folder
        (:func:`~napari_mlmi_interp.io.dicomweb.load_url`).

    Returns
    -------
    list of Volume
        At least one.

    Raises
    ------
    LoadError
        One sentence naming the file and the problem.
    """
    if is_dicomweb_url(path):
        from .dicomweb import load_url

        return load_url(str(path))
    p = Path(path)
    if not p.exists():
        raise LoadError("no such file or folder", p)
    if p.is_file():
        if image_suffix(p) is not None:
            return [read_image(p)]
        return read_dicom(p)
    dicom, other = find_dicom_files(p)
    if not dicom:
        images = sorted(f for f in other if image_suffix(f) is not None)
        if images:
            return [read_image(f) for f in images]
    return read_dicom(p)
