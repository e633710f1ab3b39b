"""Derive the shipped sample template from the MNI ICBM152 2009a files that nilearn ships.

Writes ``napari_mlmi_interp/data/mni152_t1_2mm.nii.gz`` (T1, 2 mm, block-averaged) and
``napari_mlmi_interp/data/mni152_tissue_2mm.nii.gz`` (0 background, 1 grey matter,
2 white matter: the larger of nilearn's GM/WM probabilities where it exceeds 0.3).
Run once by a maintainer (``pip install nilearn`` first); the outputs are committed, so
users never need nilearn and nothing is downloaded at run time.

Licence of the template: see ``napari_mlmi_interp/data/LICENSE-MNI-ICBM152.txt``.

    python sample_data/make_template.py [--nilearn-data DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "napari_mlmi_interp" / "data"
NAME = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def nilearn_data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")  # locate without importing nilearn
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nilearn is not installed: pip install nilearn, or pass --nilearn-data")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def block_mean(img: nib.Nifti1Image, factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Average ``factor``^3 blocks; the affine moves the origin to the first block's centre."""
    data = np.asanyarray(img.dataobj).astype(np.float32)
    shape = [s - s % factor for s in data.shape]
    data = data[: shape[0], : shape[1], : shape[2]]
    out = data.reshape(shape[0] // factor, factor, shape[1] // factor, factor, shape[2] // factor, factor)
    out = out.mean(axis=(1, 3, 5))
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.full(3, (factor - 1) / 2) + img.affine[:3, 3]
    affine[:3, :3] = img.affine[:3, :3] * factor
    return out, affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nilearn-data", type=Path, default=None)
    args = parser.parse_args()
    src = args.nilearn_data or nilearn_data_dir()
    t1, affine = block_mean(nib.load(src / NAME.format("t1")))
    gm, _ = block_mean(nib.load(src / NAME.format("gm")))
    wm, _ = block_mean(nib.load(src / NAME.format("wm")))
    tissue = np.where(np.maximum(gm, wm) > 0.3 * 255, np.where(wm >= gm, 2, 1), 0).astype(np.uint8)
    OUT.mkdir(parents=True, exist_ok=True)
    for arr, name, dtype in ((t1, "t1", np.int16), (tissue, "tissue", np.uint8)):
        img = nib.Nifti1Image(np.round(arr).astype(dtype), affine)
        img.set_qform(affine, code=4)  # MNI152
        img.set_sform(affine, code=4)
        nib.save(img, OUT / f"mni152_{name}_2mm.nii.gz")
        print(OUT / f"mni152_{name}_2mm.nii.gz", arr.shape)


if __name__ == "__main__":
    main()
