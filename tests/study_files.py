"""Reader-study files for the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_mlmi_interp.io import save
from napari_mlmi_interp.sample import make_sample


def one_case_study(folder: Path, **extra: Any) -> Path:
    """``study.json`` in ``folder``: study "pilot", the sample scan, the demo model's saliency."""
    save(make_sample().scan, folder / "a.nii.gz")
    path = folder / "study.json"
    study = {
        "study": "pilot",
        "cases": ["a.nii.gz"],
        "conditions": [{"model": "lesion-classifier", "method": "saliency", "target": "lesion"}],
        **extra,
    }
    path.write_text(json.dumps(study))
    return path
