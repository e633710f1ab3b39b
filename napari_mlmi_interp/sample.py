"""The sample scans: a real brain (MNI ICBM152 2009a T1, 2 mm) with a synthetic lesion, and
a real adult T1 (brainchop's, 256³ at 1 mm) for the real models.

Pure compute: no napari. The template ships inside the package (see
``data/LICENSE-MNI-ICBM152.txt``); the lesion is made here, deterministically, so the
ground-truth mask is exact. The real T1 ships as it is (see ``data/LICENSE-brainchop.txt``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .io import Volume, read_image, save

__all__ = [
    "LESION_CENTRE_LPS",
    "REAL_T1_FILE",
    "Sample",
    "load_real_t1",
    "load_template",
    "make_sample",
    "write_real_t1",
    "write_sample",
]

#: Lesion centre in LPS mm: right periventricular/corona radiata white matter
#: (MNI x = +26 mm right, y = -8 mm, z = +28 mm).
LESION_CENTRE_LPS = (-26.0, 8.0, 28.0)
#: Semi-axes of the lesion ellipsoid in mm (L-R, A-P, S-I) before the boundary wobble.
LESION_RADII_MM = (7.0, 9.0, 6.0)

# the package's data folder: templates and their licence notice
_DATA = "data"
#: The real T1 in the package's data folder (MIT, brainchop's ``t1_crop.nii.gz``).
REAL_T1_FILE = "brainchop_t1.nii.gz"


@dataclass
class Sample:
    """The sample: scan, lesion mask, and the tissue label map (1 grey, 2 white matter)."""

    scan: Volume
    mask: Volume
    tissue: Volume


def _data_file(name: str) -> Path:
    return Path(str(resources.files("napari_mlmi_interp").joinpath(_DATA, name)))


def load_template() -> tuple[Volume, Volume]:
    """The shipped T1 template and its tissue label map (same 2 mm LPS grid)."""
    t1 = read_image(_data_file("mni152_t1_2mm.nii.gz"))
    tissue = read_image(_data_file("mni152_tissue_2mm.nii.gz"))
    t1.name, tissue.name = "MNI152 T1", "tissue labels"
    return t1, tissue


def _smooth_noise(shape: tuple[int, ...], sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma_vox)
    return field / (np.abs(field).max() + 1e-12)


def make_sample(seed: int = 0) -> Sample:
    """Build the sample scan with one lesion and its exact mask.

    The lesion is an ellipsoid (semi-axes :data:`LESION_RADII_MM`) around
    :data:`LESION_CENTRE_LPS` whose boundary wobbles by up to 1.5 mm, 35 % brighter
    than white matter with a soft 1 mm edge; the scan gets mild noise (1.5 % of the
    white-matter level). The mask is 1 inside the lesion boundary.

    Parameters
    ----------
    seed : int
        Seed of the boundary shape and of the noise; the same seed gives the same volumes.
    """
    t1, tissue = load_template()
    rng = np.random.default_rng(seed)
    g = t1.geometry
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in g.shape], indexing="ij"), axis=-1)
    lps = g.to_lps(idx)  # (z, y, x, 3) mm
    rel = (lps - np.asarray(LESION_CENTRE_LPS)) / np.asarray(LESION_RADII_MM)
    radius = np.linalg.norm(rel, axis=-1)  # 1 on the ellipsoid
    mean_radius = float(np.mean(LESION_RADII_MM))
    wobble = 1.5 * _smooth_noise(g.shape, sigma_vox=3.0, rng=rng)  # mm
    signed_mm = (radius - 1.0) * mean_radius - wobble  # < 0 inside
    mask = (signed_mm < 0).astype(np.uint8)

    image = t1.array.astype(np.float32)
    wm_level = float(np.median(image[tissue.array == 2]))
    inside = 1.0 / (1.0 + np.exp(signed_mm / 1.0))  # soft 1 mm edge
    texture = 1.0 + 0.08 * _smooth_noise(g.shape, sigma_vox=1.0, rng=rng)
    image = image * (1 - inside) + 1.35 * wm_level * texture * inside
    image += rng.normal(0.0, 0.015 * wm_level, size=image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, None).astype(np.int16)
    # a display window, as a DICOM would carry: from black to just above the lesion, so
    # white matter is light grey and the lesion stands out instead of saturating with it
    top = 1.05 * float(np.percentile(image[mask > 0], 99))

    scan = Volume(
        array=image,
        geometry=g,
        name="sample brain T1",
        modality="MR",
        case_id="case-sample-brain",
        window=(top / 2, top),
        source="napari-mlmi-interp sample (MNI ICBM152 2009a + synthetic lesion)",
        metadata={"SeriesDescription": "sample brain T1 with synthetic lesion", "seed": seed},
    )
    lesion = scan.with_array(mask, name="lesion mask")
    labels = scan.with_array(tissue.array, name="tissue labels")
    return Sample(scan=scan, mask=lesion, tissue=labels)


def write_sample(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, str]:
    """Write the sample scan and lesion mask as NIfTI; returns ``{"scan": ..., "mask": ...}``."""
    out = Path(out_dir)
    sample = make_sample(seed)
    return {
        "scan": str(save(sample.scan, out / "sample_brain_t1.nii.gz")),
        "mask": str(save(sample.mask, out / "sample_brain_lesion_mask.nii.gz")),
    }


def load_real_t1() -> Volume:
    """The real T1: an adult T1-weighted MRI, FreeSurfer-conformed (256³, 1 mm, voxel axes L, I, A).

    brainchop's ``t1_crop.nii.gz`` (MIT, ``data/LICENSE-brainchop.txt``), read as any NIfTI:
    array (z, y, x) uint8 0..255 with its geometry in LPS mm. The scan the real models in the
    zoo (``brainchop-*``) were shown on; their model cards are measured on it.
    """
    volume = read_image(_data_file(REAL_T1_FILE))
    volume.name = "real T1 (brainchop)"
    volume.modality = "MR"
    volume.case_id = "case-real-t1"
    volume.source = "napari-mlmi-interp sample (brainchop t1_crop.nii.gz, MIT)"
    return volume


def write_real_t1(out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Copy the real T1 to ``out_dir/real_t1.nii.gz`` byte for byte; returns ``{"scan": path}``."""
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "real_t1.nii.gz"
    shutil.copyfile(_data_file(REAL_T1_FILE), target)
    return {"scan": str(target)}
