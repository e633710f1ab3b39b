"""Is this scan like the data the model was trained on? One sentence per mismatch.

:func:`check_domain` compares a scan with the optional ``domain`` of a model spec
(:class:`~napari_mlmi_interp.models.spec.Domain`): modality, body part, acquisition plane,
voxel spacing, raw intensity percentiles and how much of the model's field of view the scan
fills. A spec without a domain gives no warnings: nothing is assumed that the spec does not say.
Pure numpy; nothing is changed, nothing refused: the caller shows the sentences.
"""

from __future__ import annotations

import numpy as np

from ..io.volume import Geometry, Volume
from .spec import Domain, ModelSpec

__all__ = ["INTENSITY_MARGIN", "ISOTROPIC_RATIO", "check_domain", "intensity_percentiles"]

#: A scan whose largest / smallest spacing is at most this is treated as isotropic: its
#: acquisition plane is not checked (resampled to the model grid, any plane looks the same).
ISOTROPIC_RATIO = 1.1
#: A percentile may lie outside its training range by this fraction of the training span
#: (the high percentile's max minus the low one's min) before it is called a mismatch.
INTENSITY_MARGIN = 0.1
#: Percentiles are taken on at most this many voxels (a regular subsample of larger scans).
_MAX_SAMPLES = 2_000_000
_AXES = ("left-right", "posterior-anterior", "inferior-superior")


def intensity_percentiles(array: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The two percentiles of ``array`` (NaN ignored); scans above 2 M voxels are subsampled regularly."""
    flat = np.asarray(array).ravel()
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: int(np.ceil(flat.size / _MAX_SAMPLES))]
    lo, hi = np.nanpercentile(flat.astype(np.float64), list(percentiles))
    return float(lo), float(hi)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _lps_extent(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """LPS bounding box (mm) of the voxels' full extent (corner voxels grown by half a voxel)."""
    corners = (
        np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in geometry.shape], indexing="ij")).reshape(3, -1).T
    )
    lps = geometry.to_lps(corners)
    return lps.min(axis=0), lps.max(axis=0)


def _fov_warnings(volume: Volume, spec: ModelSpec, fraction: float) -> list[str]:
    from .preprocessing import Preprocessor

    if spec.input.size is None:  # sliding windows or native size: the model sees the whole scan
        return []
    grid = Preprocessor(spec.input, spec.normalization).grid_for(volume.geometry)
    s_lo, s_hi = _lps_extent(volume.geometry)
    m_lo, m_hi = _lps_extent(grid)
    out = []
    for k, axis in enumerate(_AXES):
        model_mm = m_hi[k] - m_lo[k]
        covered = max(0.0, min(s_hi[k], m_hi[k]) - max(s_lo[k], m_lo[k]))
        if model_mm > 0 and covered / model_mm < fraction:
            out.append(
                f"the scan covers {covered:.0f} mm {axis}, {100 * covered / model_mm:.0f} % of the "
                f"{model_mm:.0f} mm field of view of '{spec.name}' (below the {100 * fraction:.0f} % "
                "its domain asks for; the rest is padding the model never saw in training)."
            )
    return out


def check_domain(volume: Volume, spec: ModelSpec) -> list[str]:
    """Where ``volume`` lies outside ``spec.domain``: one sentence per mismatch, with both figures.

    Parameters
    ----------
    volume : Volume
        The scan as read (native grid, raw intensities: HU for CT, scanner units for MR).
        Its modality is ``volume.modality`` (``"OT"``: unknown, not checked); the body part is
        DICOM BodyPartExamined from ``volume.metadata`` when present.
    spec : ModelSpec
        The model's spec; without a ``domain`` nothing is checked.

    Returns
    -------
    list of str
        Empty when the scan matches every declared field.

    Examples
    --------
    >>> check_domain(sagittal_phantom, lesion_classifier.spec)  # doctest: +SKIP
    ["the scan is sagittal (slice normal closest to left-right, ...), but 'lesion-classifier' was ..."]
    """
    domain: Domain | None = spec.domain
    if domain is None:
        return []
    name = spec.name
    out: list[str] = []
    modality = str(volume.modality or "").upper()
    if domain.modality and modality not in ("", "OT") and modality not in domain.modality:
        out.append(
            f"the scan's modality is {modality}, but '{name}' was trained on {'/'.join(domain.modality)}."
        )
    part = str(volume.metadata.get("BodyPartExamined") or "").strip().upper()
    if domain.body_region and part and part not in domain.body_region:
        out.append(
            f"the scan's body part (DICOM BodyPartExamined) is {part}, but '{name}' was trained on "
            f"{'/'.join(domain.body_region)}."
        )
    g = volume.geometry
    spacing = np.asarray(g.spacing)
    spacing_text = " x ".join(f"{s:.2f}" for s in spacing)
    if domain.plane and spacing.max() / spacing.min() > ISOTROPIC_RATIO:
        plane = g.acquisition_plane()
        if plane not in domain.plane:
            normal = _AXES[int(np.argmax(np.abs(g.direction[:, 0])))]
            out.append(
                f"the scan is {plane} (slice normal closest to {normal}; {spacing_text} mm voxels, z, y, x), "
                f"but '{name}' was trained on {'/'.join(domain.plane)} scans."
            )
    if domain.spacing_mm is not None:
        lo, hi = domain.spacing_mm
        if spacing.min() < lo * 0.999 or spacing.max() > hi * 1.001:
            out.append(
                f"the scan's voxel spacing is {spacing_text} mm (z, y, x), outside the {lo:g}-{hi:g} mm of "
                f"the training data of '{name}'."
            )
    if domain.intensity_range is not None:
        q = domain.intensity_percentiles
        got = intensity_percentiles(volume.array, q)
        (lo_min, lo_max), (hi_min, hi_max) = domain.intensity_range
        margin = INTENSITY_MARGIN * max(hi_max - lo_min, 1e-12)
        for value, (a, b), pct in ((got[0], (lo_min, lo_max), q[0]), (got[1], (hi_min, hi_max), q[1])):
            if value < a - margin or value > b + margin:
                out.append(
                    f"the scan's {pct:g}th intensity percentile is {_fmt(value)}, outside the "
                    f"{_fmt(a)} to {_fmt(b)} of the training scans of '{name}' "
                    "(raw units, before normalisation)."
                )
    if domain.min_fov_fraction is not None:
        out.extend(_fov_warnings(volume, spec, domain.min_fov_fraction))
    return out
