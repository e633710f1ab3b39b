"""Masks read from files: binary, or refused with the values found."""

from __future__ import annotations

import numpy as np

from .errors import LoadError
from .volume import Volume

__all__ = ["binary_mask"]


def binary_mask(
    mask: Volume | np.ndarray,
    *,
    threshold: float | None = None,
    what: str = "ROI",
    path: object = None,
    hint: str = "",
) -> np.ndarray:
    """``mask`` as a boolean array, refusing anything that is not a mask.

    Parameters
    ----------
    mask : Volume or numpy.ndarray
        A mask: background 0 and one positive value (``1``, ``255``, ``True``).
    threshold : float, optional
        Use ``mask > threshold`` instead, whatever the values (an intensity image or a
        probability map made into a region).
    what : str
        What the mask is, for the message.
    path : path-like, optional
        The file it came from, prefixed to the message.
    hint : str
        Appended to the message (what the caller can do instead).

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``mask``.

    Raises
    ------
    LoadError
        When ``threshold`` is None and ``mask`` holds more than one non-zero value, or a
        negative one: an intensity image or a label map given where a mask belongs.
    """
    array = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if threshold is not None:
        return array > threshold
    if array.dtype == bool:
        return array
    nonzero = array[array != 0]
    if nonzero.size == 0 or (nonzero[0] > 0 and not np.any(nonzero != nonzero[0])):
        return array > 0
    values = np.unique(array)
    more = "" if values.size <= 1000 else " or more"
    raise LoadError(
        f"the {what} must be a binary mask (0 and one positive value), got {min(values.size, 1000)}{more} "
        f"distinct values from {float(values[0]):g} to {float(values[-1]):g}{hint}",
        path,
    )
