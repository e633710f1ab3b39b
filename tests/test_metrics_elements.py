"""Visual recognizability, physical attribution, transparency and actionability metrics:
known answers on small anisotropic grids, computed by hand (and Captum's infidelity
against its definition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_mlmi_interp import metrics as M
from napari_mlmi_interp.io import load
from napari_mlmi_interp.io.volume import Geometry

# 15 degrees about S: array axes are not the patient axes, and voxels are 3 x 1 x 0.5 mm
_C, _S = math.cos(math.radians(15)), math.sin(math.radians(15))
OBLIQUE = Geometry(
    (4, 5, 6), (3.0, 1.0, 0.5), (10.0, -20.0, 30.0), np.array([[_C, -_S, 0], [_S, _C, 0], [0, 0, 1.0]])
)


# -- visual recognizability -------------------------------------------------------------------------
def test_mass_region_and_components_by_hand():
    a = np.zeros((4, 5, 6))
    a[0, 0, 0] = 5.0  # blob 1
    a[0, 0, 1] = 3.0  # touches blob 1
    a[3, 4, 5] = 1.5  # blob 2, far away
    a[2, 2, 2] = 0.5  # a speck
    a[1, 1, 4] = -9.0  # negative: never part of the mass
    # positive mass 10: 90 % = 9 -> 5 + 3 + 1.5 = 9.5 (three voxels, two components)
    region = M.mass_region(a, 0.9)
    assert region.sum() == 3 and region[0, 0, 0] and region[0, 0, 1] and region[3, 4, 5]
    assert M.components(a, 0.9) == 2
    # 50 % = 5 -> the top voxel alone
    assert M.mass_region(a, 0.5).sum() == 1 and M.components(a, 0.5) == 1
    assert M.components(-np.abs(a)) == 0  # no positive mass, nothing to count


def test_diagonal_neighbours_are_one_component():
    a = np.zeros((3, 3, 3))
    a[0, 0, 0] = a[1, 1, 1] = a[2, 2, 2] = 1.0  # corner-touching: 26-connected
    assert M.components(a, 1.0) == 1


def test_gini_and_entropy_by_hand():
    c = np.array([3.0, 0.0, 2.0, 1.0]).reshape(1, 1, 4)  # sorted: 0, 1, 2, 3; sum 6; N = 4
    # G = 1 - 2 * [1/6 * 2.5/4 + 2/6 * 1.5/4 + 3/6 * 0.5/4] = 1 - 2 * 7/24 = 5/12
    assert M.gini(c) == pytest.approx(5 / 12)
    # H = (1/6 ln 6 + 2/6 ln 3 + 3/6 ln 2) / ln 4
    expected = (math.log(6) / 6 + math.log(3) / 3 + math.log(2) / 2) / math.log(4)
    assert M.normalized_entropy(c) == pytest.approx(expected)
    flat, one = np.ones((2, 3, 4)), np.zeros((2, 3, 4))
    one[1, 2, 3] = 7.0
    assert M.gini(flat) == pytest.approx(0.0) and M.normalized_entropy(flat) == pytest.approx(1.0)
    assert M.gini(one) == pytest.approx(1 - 1 / 24) and M.normalized_entropy(one) == pytest.approx(0.0)
    assert M.gini(-c) == pytest.approx(5 / 12)  # magnitudes: the sign does not matter


# -- physical attribution --------------------------------------------------------------------------
def test_peak_centroid_volume_extent_on_an_oblique_anisotropic_grid():
    a = np.zeros(OBLIQUE.shape)
    a[1, 2, 3] = 3.0
    a[3, 2, 3] = 1.0
    affine = OBLIQUE.index_to_lps
    np.testing.assert_allclose(M.peak_lps(a, affine), OBLIQUE.to_lps((1, 2, 3)), atol=1e-9)
    # weights 3 and 1: the centroid lies at index (1.5, 2, 3), a quarter of the way
    np.testing.assert_allclose(M.centroid_lps(a, affine), OBLIQUE.to_lps((1.5, 2, 3)), atol=1e-9)
    region = a > 0
    assert M.region_volume_ml(region, affine) == pytest.approx(2 * 3.0 * 1.0 * 0.5 / 1000)
    # the two voxels are 2 slices = 6 mm apart along array axis 0, which points along L
    # (direction column 0 = (cos 15, sin 15, 0)); one voxel adds |D| @ spacing per LPS axis
    one = np.abs(OBLIQUE.direction) @ np.array(OBLIQUE.spacing)
    expected = np.array([6 * _C, 6 * _S, 0.0]) + one
    np.testing.assert_allclose(M.region_extent_mm(region, affine), expected, atol=1e-9)
    assert M.centroid_lps(-a, affine) is None


def test_intensity_and_mass_per_label():
    scan = np.arange(24, dtype=float).reshape(2, 3, 4)
    region = np.zeros((2, 3, 4), bool)
    region[0, 0, :] = True  # values 0, 1, 2, 3
    stats = M.intensity_stats(scan, region)
    assert stats["mean"] == 1.5 and stats["min"] == 0 and stats["max"] == 3 and stats["median"] == 1.5
    assert stats["sd"] == pytest.approx(np.std([0, 1, 2, 3]))
    labels = np.zeros((2, 3, 4), int)
    labels[0] = 1
    labels[1, 0] = 2
    a = np.zeros((2, 3, 4))
    a[0, 1, 1] = 6.0  # label 1
    a[1, 0, 2] = 3.0  # label 2
    a[1, 2, 3] = 1.0  # unlabelled
    a[0, 0, 0] = -4.0  # negative: not counted
    shares = M.mass_per_label(a, labels, {1: "grey matter"})
    assert shares == pytest.approx({"grey matter": 0.6, "label 2": 0.3, "unlabelled": 0.1})
    assert list(shares) == ["grey matter", "label 2", "unlabelled"]


def test_physical_positions_match_a_real_scanner_series_read_independently(shared_dicom):
    """Peak and extent on the Siemens sagittal PD/T2 series, checked against the vendor
    reference NIfTI's affine read by nibabel (not our reader)."""
    import nibabel as nib

    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    volume = next(v for v in load(folder) if v.metadata.get("EchoNumber") == 1)
    ref = nib.load(str(shared_dicom / "dcm_qa_pdt2" / "Ref" / "Siemens_pd+t2_tse_sag_ISO_1.8mm_3_e1.nii"))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    ref_affine = ras_to_lps @ ref.affine
    data = np.asanyarray(ref.dataobj)
    # a map that is 1 on one voxel of the reference image (chosen away from the centre)
    ijk = np.array([3, data.shape[1] - 5, 7])
    ref_lps = ref_affine[:3, :3] @ ijk + ref_affine[:3, 3]
    index = np.round(volume.geometry.to_index(ref_lps)).astype(int)
    a = np.zeros(volume.shape)
    a[tuple(index)] = 1.0
    np.testing.assert_allclose(M.peak_lps(a, volume.index_to_lps), ref_lps, atol=1e-3)
    # the whole grid: volume and bounding box agree with the reference's corners
    corners = np.array(
        [
            [i, j, k]
            for i in (0, data.shape[0] - 1)
            for j in (0, data.shape[1] - 1)
            for k in (0, data.shape[2] - 1)
        ]
    )
    corner_lps = corners @ ref_affine[:3, :3].T + ref_affine[:3, 3]
    one_voxel = np.abs(ref_affine[:3, :3]).sum(axis=1)
    full = np.ones(volume.shape, bool)
    np.testing.assert_allclose(
        M.region_extent_mm(full, volume.index_to_lps), np.ptp(corner_lps, axis=0) + one_voxel, atol=1e-2
    )
    voxel_ml = abs(np.linalg.det(ref_affine[:3, :3])) / 1000
    assert M.region_volume_ml(full, volume.index_to_lps) == pytest.approx(data.size * voxel_ml, rel=1e-4)


# -- transparency and actionability ---------------------------------------------------------------
W = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).reshape(1, 1, 2, 2, 2)


def linear(x):
    """f(x) = sum(w * x): every answer below follows by hand."""
    return (x * W).flatten(1).sum(dim=1)


def test_deletion_and_insertion_curves_by_hand():
    x = torch.ones(1, 1, 2, 2, 2)
    attribution = W[0, 0].numpy()  # ranks the voxels 8, 7, ..., 1
    f, s = M.deletion_curve(linear, x, attribution, steps=4, baseline=0.0, batch_size=2)
    np.testing.assert_allclose(f, [0, 0.25, 0.5, 0.75, 1.0])
    # remove the top 2 (8 + 7), then 4 (+ 6 + 5), then 6 (+ 4 + 3), then all
    np.testing.assert_allclose(s, [36, 21, 10, 3, 0])
    # trapezoids of width 1/4: (36 + 21 + 21 + 10 + 10 + 3 + 3 + 0) / 8
    assert M.curve_auc(f, s) == pytest.approx(104 / 8)
    f, s = M.insertion_curve(linear, x, attribution, steps=4, baseline=0.0)
    np.testing.assert_allclose(s, [0, 15, 26, 33, 36])
    # a map ranking the other way deletes the small weights first: a worse (higher) deletion AUC
    worse = M.curve_auc(*M.deletion_curve(linear, x, -attribution, steps=4, baseline=0.0))
    assert worse > 104 / 8


def test_region_removal_and_augmentation_by_hand():
    x = torch.ones(1, 1, 2, 2, 2)
    region = np.zeros((2, 2, 2), bool)
    region[1, 1, 1] = region[0, 0, 0] = True  # weights 8 and 1
    assert M.region_removal(linear, x, region, baseline=0.0) == (36.0, 27.0)
    # a constant scan shifted (edges repeat), without intensity change or noise, scores the same
    flat = torch.full((1, 1, 6, 6, 6), 2.0)
    scores = M.tta_scores(lambda b: b.flatten(1).mean(dim=1), flat, n=5, intensity=0.0, noise=0.0)
    np.testing.assert_allclose(scores, 2.0)
    # intensity scaling of +- 10 % moves the mean by at most 10 %
    scores = M.tta_scores(lambda b: b.flatten(1).mean(dim=1), flat, n=8, intensity=0.1, noise=0.0)
    assert scores[0] == 2.0 and np.all(np.abs(scores - 2.0) <= 0.2 + 1e-6) and np.std(scores) > 0


def test_infidelity_by_captum_matches_its_definition():
    x = torch.rand(1, 1, 2, 2, 2, generator=torch.Generator().manual_seed(1)) + 0.5
    w = W[0, 0].numpy()
    # noise perturbation: for a linear model the gradient is exactly faithful: I.w = f(x) - f(x - I)
    assert M.infidelity(linear, x, w, perturbation="noise", normalize=False, n_perturb=32) == pytest.approx(
        0.0, abs=1e-6
    )
    # twice the gradient: E[(2 I.w - I.w)^2] = E[(I.w)^2] = sigma^2 |w|^2, sigma = 0.1 * sd(x)
    sigma = 0.1 * float(x.std())
    value = M.infidelity(
        linear, x, 2 * w, perturbation="noise", normalize=False, n_perturb=4000, batch_size=500
    )
    assert value == pytest.approx(sigma**2 * float((w**2).sum()), rel=0.1)
    # normalised, the scale is irrelevant: 0 again
    assert M.infidelity(
        linear, x, 2 * w, perturbation="noise", normalize=True, n_perturb=32
    ) == pytest.approx(0.0, abs=1e-6)
    # subset perturbation: the exact "global" map w * (x - 0) is perfectly faithful; a flat map is not
    exact = w * x[0, 0].numpy()
    assert M.infidelity(linear, x, exact, block=1, subset_fraction=0.5, normalize=False) == pytest.approx(
        0.0, abs=1e-6
    )
    assert M.infidelity(linear, x, np.ones_like(w), block=1, subset_fraction=0.5) > 1e-3


def test_randomisation_of_a_map_that_ignores_the_model_stays_at_one():
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(2, 1, 1))
    x = torch.rand(1, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    edges = np.abs(np.gradient(x[0, 0].numpy())).sum(axis=0)  # an edge detector: no model at all
    result = M.randomisation_test(net, lambda module: edges, max_stages=5)
    assert result.stages == [["2"], ["0"]]  # top layer first; the ReLU has no parameters
    np.testing.assert_allclose(result.correlations, 1.0)

    def gradient(module):
        xx = x.clone().requires_grad_(True)
        module(xx).sum().backward()
        return xx.grad[0, 0].numpy()

    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = M.randomisation_test(net, gradient)
    assert result.final < 0.9  # the gradient map follows the model
    for k, v in net.state_dict().items():  # the model itself is untouched
        assert torch.equal(v, before[k])


def test_tta_segmentation_of_a_one_channel_segmenter_by_hand():
    # one channel: the class is where the logit x - 0.5 is > 0; its probability sigmoid(x - 0.5)
    x = torch.zeros((1, 1, 10, 10, 10))
    x[0, 0, 3:6, 3:7, 3:8] = 1.0  # 3 x 4 x 5 = 60 voxels
    roi = np.zeros((10, 10, 10), bool)
    roi[3:6, 3:7, 3:5] = True  # 24 of them, plus 6 outside at x = 0 below
    roi[0, 0, :6] = True
    spread = M.tta_segmentation(
        lambda t: t - 0.5, x, 0, voxel_ml=0.001, roi=roi, n=3, shift_voxels=1, intensity=0.0, noise=0.0
    )
    assert spread.volumes_ml == pytest.approx([0.06] * 4)  # 60 voxels of 1 mm³, moved but whole
    assert spread.dice == [1.0] * 4  # shifted back: the same voxels
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert spread.roi_probability[0] == pytest.approx((24 * sig(0.5) + 6 * sig(-0.5)) / 30, rel=1e-6)
    assert spread.sd(spread.volumes_ml) == 0.0 and spread.sd([0.5]) is None
    # an empty segmentation agrees with itself: Dice 1, volume 0
    empty = M.tta_segmentation(lambda t: t - 5.0, x, 0, voxel_ml=0.001, n=2)
    assert empty.volumes_ml == [0.0] * 3 and empty.dice == [1.0] * 3 and empty.roi_probability == []


def test_map_agreement_by_hand():
    exact = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    same = M.map_agreement(exact * 3 + 1, exact)  # a monotone rescaling ranks alike
    assert same == {"spearman": pytest.approx(1.0), "dice_top": 1.0, "percent": 1.0}
    reversed_ = M.map_agreement(-exact, exact)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["dice_top"] == 0.0
    # the top 1 % is 10 voxels: move 5 of them elsewhere, Dice 2*5/(10+10) = 0.5
    moved = exact.copy().ravel()
    moved[[995, 996, 997, 998, 999]] = 0.0
    moved[[0, 1, 2, 3, 4]] = 2000.0
    got = M.map_agreement(moved.reshape(exact.shape), exact)
    assert got["dice_top"] == pytest.approx(0.5) and 0.9 < got["spearman"] < 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        M.map_agreement(exact[:5], exact)
