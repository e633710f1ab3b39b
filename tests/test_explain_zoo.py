"""Attributions of the shipped demo zoo point where they should: the lesion, or the shortcut tag."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401 - a hard dependency: a broken install fails, not skips

from napari_mlmi_interp.explain import explain
from napari_mlmi_interp.models import builtin_models, load_model
from napari_mlmi_interp.synthetic import (
    MARKER_BOX_LPS,
    SHORTCUT_CASE_SEED,
    make_shortcut_case,
    make_subject,
    split_seeds,
)

N_POSITIVE = 20
TOLERANCE_MM = 5.0


def distance_to_mask_mm(volume, mask: np.ndarray, lps: np.ndarray) -> float:
    """Distance (mm) from an LPS point to the nearest voxel of ``mask`` (0 inside it)."""
    idx = np.argwhere(mask > 0)
    points = volume.geometry.to_lps(idx)
    return float(np.sqrt(((points - lps) ** 2).sum(axis=1)).min())


def first_positive_test_subjects(n: int):
    out = []
    for seed in split_seeds("test", 200):
        subject = make_subject(seed)
        if subject.label:
            out.append(subject)
        if len(out) == n:
            return out
    raise AssertionError("not enough positive test subjects")


@pytest.fixture(scope="module")
def zoo():
    return {s.name: load_model(s) for s in builtin_models() if s.task == "classification"}


@pytest.mark.slow
def test_gradcam_and_ig_peaks_lie_on_the_lesion_for_most_positive_test_cases(zoo):
    model = zoo["lesion-classifier"]
    distances: dict[str, list[float]] = {"gradcam": [], "integrated_gradients": []}
    for subject in first_positive_test_subjects(N_POSITIVE):
        first = None
        for method in distances:
            result = explain(subject.scan, model, method, target="lesion", model_input=first)
            first = result.prediction.model_input
            distances[method].append(distance_to_mask_mm(subject.scan, subject.mask.array, result.peak_lps()))
    report = {
        m: f"{sum(d <= TOLERANCE_MM for d in v)}/{len(v)} within {TOLERANCE_MM} mm, "
        f"median {np.median(v):.1f} mm"
        for m, v in distances.items()
    }
    print(report)
    for method, values in distances.items():
        hits = sum(d <= TOLERANCE_MM for d in values)
        assert hits >= 0.8 * N_POSITIVE, f"{method}: {report[method]}"


@pytest.mark.slow
def test_shortcut_classifier_looks_at_the_tag_on_its_shortcut_case(zoo):
    case = make_shortcut_case()
    plain = make_subject(SHORTCUT_CASE_SEED, n_lesions=1, marker=False)  # the same subject, no tag
    lo, hi = np.asarray(MARKER_BOX_LPS[0]), np.asarray(MARKER_BOX_LPS[1])
    voxel = max(case.scan.geometry.spacing)
    for method in ("gradcam", "integrated_gradients"):
        shortcut = explain(case.scan, zoo["shortcut-classifier"], method, target="lesion")
        assert shortcut.prediction.label == "lesion"
        peak = shortcut.peak_lps()
        assert np.all(peak >= lo - voxel) and np.all(peak <= hi + voxel), f"{method}: peak at {peak}"
        # without the tag the shortcut classifier misses the lesion; the honest one finds it
        assert explain(plain.scan, zoo["shortcut-classifier"], method).prediction.label == "no lesion"
        honest = explain(plain.scan, zoo["lesion-classifier"], method, target="lesion")
        assert honest.prediction.label == "lesion"
        assert distance_to_mask_mm(plain.scan, plain.mask.array, honest.peak_lps()) <= TOLERANCE_MM
