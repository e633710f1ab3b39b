"""Nearest reference cases in a model's feature space (for models without prototypes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401 - a hard dependency: a broken install fails, not skips

from napari_mlmi_interp.explain import ReferenceLibrary
from napari_mlmi_interp.explain.references import index_path
from napari_mlmi_interp.io import save
from napari_mlmi_interp.models import resolve_model
from napari_mlmi_interp.synthetic import make_subject, split_seeds


@pytest.fixture(scope="module")
def library_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("references")
    subjects = [make_subject(seed) for seed in split_seeds("test", 4)]
    for i, s in enumerate(subjects):
        save(s.scan, folder / f"case{i}.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not a nifti file")
    return folder, subjects


def test_a_library_case_is_its_own_nearest_neighbour(library_folder, monkeypatch):
    folder, subjects = library_folder
    model = resolve_model("lesion-classifier")
    library = ReferenceLibrary(folder, model).build()
    assert len(library.entries) == 4
    assert len(library.skipped) == 1 and library.skipped[0].startswith("broken.nii.gz")
    matches = library.nearest(subjects[2].scan, top=3)
    assert [m.path.endswith("case2.nii.gz") for m in matches] == [True, False, False]
    assert matches[0].similarity == pytest.approx(1.0, abs=1e-6)
    sims = [m.similarity for m in matches]
    assert sims == sorted(sims, reverse=True) and all(np.isfinite(sims))
    assert matches[0].thumbnails.shape == (3, 32, 32)
    assert matches[0].predicted in model.spec.classes
    # indexed once: a second build reads the index and runs no prediction
    assert index_path(folder, model).is_file()
    import napari_mlmi_interp.explain.references as references

    monkeypatch.setattr(references, "predict", lambda *a, **k: pytest.fail("re-indexed"))
    again = ReferenceLibrary(folder, model).build()
    np.testing.assert_allclose(again.vectors, library.vectors)
    with pytest.raises(ValueError, match="must be a folder of scans"):
        ReferenceLibrary(folder / "case0.nii.gz", model)
