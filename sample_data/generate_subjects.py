"""Write synthetic demo subjects to disk: scan, lesion mask and ground truth per subject.

    python sample_data/generate_subjects.py OUT_DIR [--split test] [--n 10] [--marker]

Each subject ``<case>`` gets ``<case>.nii.gz`` (the scan, 2 mm MNI grid), ``<case>_mask.nii.gz``
(0 background, k = lesion k) and ``<case>.json`` (seed, label, lesion centres in LPS mm,
radii, contrast). Deterministic: the same split and index give the same subject. The
generator itself is :func:`napari_mlmi_interp.synthetic.make_subject`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_mlmi_interp.io import save
from napari_mlmi_interp.synthetic import make_subject, split_seeds


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--marker", action="store_true", help="burn the shortcut tag into lesion cases")
    args = parser.parse_args(argv)
    written = []
    for seed in split_seeds(args.split, args.n):
        probe = make_subject(seed)
        sub = make_subject(seed, marker=True) if args.marker and probe.label else probe
        case = sub.scan.case_id
        save(sub.scan, args.out / f"{case}.nii.gz")
        save(sub.mask, args.out / f"{case}_mask.nii.gz")
        truth = {
            "case_id": case,
            "seed": seed,
            "split": args.split,
            "label": sub.label,
            "marker": sub.marker,
            "lesions": [
                {
                    "centre_lps_mm": list(les.centre_lps),
                    "radii_mm": list(les.radii_mm),
                    "radius_mm": round(les.radius_mm, 3),
                    "contrast": round(les.contrast, 3),
                }
                for les in sub.lesions
            ],
        }
        path = args.out / f"{case}.json"
        path.write_text(json.dumps(truth, indent=2) + "\n")
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    main()
