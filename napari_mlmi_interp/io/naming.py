"""File names for what the plugin writes: from DICOM series facts or pseudonyms, never from input file names.

An input file or folder name may hold a patient's name (``DOE_JANE_19700101.nii.gz``), so
it never becomes part of an output name. A DICOM series is named by its number and
description (``4_T1_MPRAGE``), acquisition facts that carry no identity; any other volume
by its pseudonymous case id (``case-<hex>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .volume import Volume

__all__ = ["load_warnings", "output_stem", "safe_name"]


def safe_name(text: str) -> str:
    """``text`` with every run of characters unsafe in a file name replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "volume"


def output_stem(volume: Volume) -> str:
    """A file-name stem for ``volume`` that says what it is and holds no identity.

    Parameters
    ----------
    volume : Volume
        A loaded volume.

    Returns
    -------
    str
        For a DICOM series, its series number and name (``4_T1_MPRAGE``,
        ``4_T1_MPRAGE_echo_2``, ``3_cine_repeat_2_of_4``); for any other volume, its case
        id (``case-<hex>``, a keyed hash of the file's content).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_mlmi_interp.io import Geometry, Volume
    >>> grid = Geometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    >>> v = Volume(np.zeros((2, 2, 2)), grid, name="DOE_JANE", case_id="case-0f")
    >>> output_stem(v)
    'case-0f'
    """
    number = volume.metadata.get("SeriesNumber")
    if volume.references.get("SeriesInstanceUID") and number is not None:
        name = volume.name.strip()
        if not name.lower().startswith(f"series {number}"):
            name = f"{number} {name}"
        return safe_name(name)
    return safe_name(volume.case_id) if volume.case_id else "volume"


def load_warnings(volumes: Iterable[Volume]) -> list[str]:
    """Every warning of the volumes of one load, once each, in order.

    Volumes split from one series (echoes, repeats, orientations) share that series'
    warnings, which name the series; a folder's notes (files skipped) come with its first
    volume. So each warning is said once per series, and a folder note once per folder.
    """
    return list(dict.fromkeys(w for v in volumes for w in v.warnings))
