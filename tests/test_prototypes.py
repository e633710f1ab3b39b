"""Prototype thumbnails (pure numpy) and prototype reports for a chosen class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mlmi_interp.explain.prototypes import OUTLINE_RGB, prototype_report, prototype_thumbnail
from napari_mlmi_interp.models import resolve_model
from napari_mlmi_interp.sample import make_sample


def _is_outline(rgb: np.ndarray) -> np.ndarray:
    return np.all(rgb == np.asarray(OUTLINE_RGB, np.uint8), axis=-1)


def test_thumbnail_outlines_the_region_where_it_is():
    patches = np.zeros((3, 24, 24), np.float32)
    patches[:, ::2] = 1.0  # stripes: grey levels, never the outline colour
    regions = np.zeros((3, 24, 24), bool)
    regions[0, 9:15, 9:15] = True  # axial: rows (y) and columns (x) 9..14
    regions[1, 0:4, 0:24] = True  # coronal: the 4 most inferior rows (z = 0..3)
    image = prototype_thumbnail(patches, regions, size=96, gap=4, outline_width=2)
    assert image.shape == (96, 3 * 96 + 2 * 4, 3) and image.dtype == np.uint8
    outline = _is_outline(image)

    axial = outline[:, :96]
    # 4 pixels per voxel: the square covers pixels 36..59; its outline is the 2-pixel rim
    expected = np.zeros((96, 96), bool)
    expected[36:60, 36:60] = True
    expected[38:58, 38:58] = False
    np.testing.assert_array_equal(axial, expected)

    # coronal is shown superior up: z = 0..3 are the bottom 16 rows of the second tile
    coronal = outline[:, 100:196]
    expected = np.zeros((96, 96), bool)
    expected[80:96] = True
    expected[82:94, 2:94] = False
    np.testing.assert_array_equal(coronal, expected)
    assert not outline[:, 200:].any()  # no region on the sagittal slice
    assert not outline[:, 96:100].any() and not outline[:, 196:200].any()  # gaps


def test_thumbnail_without_regions_outlines_the_central_cell():
    image = prototype_thumbnail(np.zeros((3, 24, 24), np.float32), size=120, gap=0, outline_width=1)
    assert image.shape == (120, 360, 3)
    outline = _is_outline(image[:, :120])
    # the central 2 x 2 voxels (11, 12) at 5 pixels per voxel: pixels 55..64, a 1-pixel rim
    expected = np.zeros((120, 120), bool)
    expected[55:65, 55:65] = True
    expected[56:64, 56:64] = False
    np.testing.assert_array_equal(outline, expected)


def test_thumbnail_grey_levels_span_the_patch():
    patches = np.broadcast_to(np.linspace(0, 100, 24, dtype=np.float32), (3, 24, 24)).copy()
    image = prototype_thumbnail(patches, np.zeros((3, 24, 24), bool), size=96)
    row = image[50, :96, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)
    assert np.all(image[..., 0] == image[..., 1])  # grey where there is no outline


@pytest.mark.parametrize(
    ("patches", "regions", "size", "message"),
    [
        (np.zeros((2, 24, 24)), None, 96, "patches must have shape"),
        (np.zeros((3, 24, 24)), np.zeros((3, 12, 12), bool), 96, "regions must have"),
        (np.zeros((3, 24, 24)), None, 4, "size must be at least 8"),
    ],
)
def test_thumbnail_rejects_bad_input(patches, regions, size, message):
    with pytest.raises(ValueError, match=message):
        prototype_thumbnail(patches, regions, size=size)


@pytest.fixture(scope="module")
def protonet_on_sample():
    return resolve_model("lesion-protonet"), make_sample()


def test_report_for_a_chosen_class_lists_that_classs_prototypes(protonet_on_sample):
    model, sample = protonet_on_sample
    module = model.module
    default = prototype_report(sample.scan, model, top=5)
    assert default.target_index == default.prediction.predicted  # the predicted class by default
    assert default.classes == ["no lesion", "lesion"]
    mi = default.prediction.model_input
    with torch.no_grad():
        similarity = module.forward_details(mi.tensor())["similarity"][0].numpy()
    weights = module.last_layer.weight.detach().numpy()
    for target in ("no lesion", "lesion"):
        report = prototype_report(sample.scan, model, target=target, top=5, model_input=mi)
        k = model.spec.classes.index(target)
        assert report.target_name == target and report.target_index == k
        # the class's own evidence, computed here from the network's forward pass
        contribution = similarity * weights[k]
        expected = list(np.argsort(-contribution)[:5])
        assert [m.index for m in report.matches] == expected
        for m in report.matches:
            assert m.class_name == target  # the top 5 of a class are that class's prototypes
            assert m.weight == pytest.approx(float(weights[k, m.index]))
            assert m.similarity == pytest.approx(float(similarity[m.index]), rel=1e-5)
            assert m.thumbnail().shape[0] >= 96
