"""Synthetic subjects for the demo zoo: real anatomy, random appearance, exact lesion masks.

Each subject is the shipped MNI ICBM152 template (see :mod:`napari_mlmi_interp.sample`)
under a random smooth deformation and affine, with a multiplicative bias field, a gamma
contrast change, noise, and 0-2 synthetic lesions (ellipsoids with a wobbling boundary,
3-15 mm radius, 25-70 % brighter than white matter) placed in the deformed white matter.
Every random field is defined in patient space (LPS mm) and lesions are placed by mapping a
template white-matter point through the warp, so a seed is one physical subject on any
grid, with exact masks on each; only the per-voxel noise depends on the grid.

Everything is a pure function of the subject's seed. Splits use disjoint seed ranges:
train ``0..``, validation ``100000..``, test ``200000..``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .errors import InputError
from .io.volume import Geometry, Volume

__all__ = [
    "MARKER_BOX_LPS",
    "SHORTCUT_CASE_SEED",
    "Lesion",
    "Subject",
    "make_shortcut_case",
    "make_subject",
    "split_seeds",
    "template_grid",
]

SPLIT_OFFSETS = {"train": 0, "val": 100_000, "test": 200_000}

#: The shortcut marker: a bright "burned-in tag" box in the air at the right-anterior-superior corner
#: (LPS mm, min and max corners), inside the zoo models' field of view.
MARKER_BOX_LPS = ((-80.0, -74.0, 66.0), (-62.0, -58.0, 90.0))


@dataclass
class Lesion:
    """A lesion in patient space: centre (LPS mm), semi-axes (mm), contrast (x white matter)."""

    centre_lps: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    contrast: float
    wobble_seed: int

    @property
    def radius_mm(self) -> float:
        """Equivalent radius (geometric mean of the semi-axes)."""
        return float(np.prod(self.radii_mm) ** (1 / 3))


@dataclass
class Subject:
    """One synthetic scan with its ground truth."""

    seed: int
    scan: Volume
    mask: Volume  # 0 background, k = lesion k (1-based)
    lesions: list[Lesion] = field(default_factory=list)
    marker: bool = False

    @property
    def label(self) -> int:
        """1 when the subject has at least one lesion."""
        return int(bool(self.lesions))


def split_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` subject seeds of ``split`` (train, val or test)."""
    if split not in SPLIT_OFFSETS:
        raise InputError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}")
    return [SPLIT_OFFSETS[split] + i for i in range(n)]


@lru_cache(maxsize=4)
def _template(smooth_for: tuple[float, float, float] | None) -> tuple[Volume, Volume, np.ndarray]:
    """Template T1, tissue labels and white-matter level, smoothed for a coarser target."""
    from scipy.ndimage import gaussian_filter

    from .sample import load_template

    t1, tissue = load_template()
    data = t1.array.astype(np.float32)
    if smooth_for is not None:
        s = np.asarray(t1.geometry.spacing)
        sigma = 0.5 * np.sqrt(np.clip(np.asarray(smooth_for) ** 2 - s**2, 0, None)) / s
        if np.any(sigma > 0):
            data = gaussian_filter(data, sigma)
    wm = float(np.median(t1.array[tissue.array == 2]))
    return Volume(data, t1.geometry, name=t1.name), tissue, np.float32(wm)


@lru_cache(maxsize=1)
def _white_matter_points() -> np.ndarray:
    """Template voxel indices in white matter at least 4 mm from its edge."""
    from scipy.ndimage import binary_erosion

    from .sample import load_template

    tissue = load_template()[1].array
    return np.argwhere(binary_erosion(tissue == 2, iterations=2))


def template_grid() -> Geometry:
    """The 2 mm grid of the shipped template (the sample scan's grid)."""
    from .sample import load_template

    return load_template()[0].geometry


def _smooth_field_at(
    rng: np.random.Generator, coords: np.ndarray, control: int, amplitude: float
) -> np.ndarray:
    """A smooth random field at points given in lattice coordinates (``(3, ...)``, 0..1).

    Random values on a ``control``^3 lattice spanning the template's box, cubic-spline
    interpolated: the field is defined in patient space, so it is the same on any grid.
    """
    from scipy.ndimage import map_coordinates

    coarse = rng.uniform(-1, 1, size=(control, control, control))
    out = map_coordinates(coarse, coords * (control - 1), order=3, mode="nearest")
    return (amplitude * out / max(1e-6, float(np.abs(coarse).max()))).astype(np.float32)


def _box_coords(lps: np.ndarray) -> np.ndarray:
    """LPS points (..., 3) -> (3, ...) coordinates in the template's LPS bounding box, 0..1."""
    tg = template_grid()
    corners = tg.to_lps(
        np.array(np.meshgrid(*[[0, s - 1] for s in tg.shape], indexing="ij")).reshape(3, -1).T
    )
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return np.moveaxis((lps - lo) / (hi - lo), -1, 0)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a, b, c = np.radians(rng.uniform(-max_deg, max_deg, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def lesion_signed_distance(lesion: Lesion, lps: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to the lesion boundary at LPS points ``(..., 3)``; < 0 inside."""
    rel = (lps - np.asarray(lesion.centre_lps)) / np.asarray(lesion.radii_mm)
    r = np.linalg.norm(rel, axis=-1)
    # boundary wobble: a few random low-order harmonics of the direction, up to 20 % of the radius
    rng = np.random.default_rng(lesion.wobble_seed)
    unit = rel / np.maximum(r[..., None], 1e-6)
    k = rng.normal(size=(4, 3))
    phase = rng.uniform(0, 2 * np.pi, size=4)
    wobble = sum(np.sin(unit @ (2.0 * k[i]) + phase[i]) for i in range(4)) / 4.0
    return (r - 1.0 - 0.2 * wobble) * lesion.radius_mm


def make_subject(
    seed: int,
    *,
    grid: Geometry | None = None,
    n_lesions: int | None = None,
    marker: bool | str | None = None,
    lesion_radius_mm: tuple[float, float] = (3.0, 15.0),
) -> Subject:
    """Generate subject ``seed`` on ``grid`` (default: the template's 2 mm grid).

    Parameters
    ----------
    seed : int
        Determines everything (deformation, appearance, lesions).
    grid : Geometry, optional
        Where to sample the subject (any spacing, orientation or field of view).
    n_lesions : int, optional
        Force the number of lesions (default: 0 with probability 0.5, 1 with 0.3, 2 with 0.2).
    marker : bool or "if_lesion", optional
        Burn the shortcut tag (:data:`MARKER_BOX_LPS`) into the image; ``"if_lesion"``
        burns it exactly when the subject has a lesion (the shortcut training data).
    lesion_radius_mm : (float, float)
        Range of equivalent lesion radii.
    """
    # one generator, drawn in a fixed order (warp, lesions, appearance): a seed is one subject
    rng = np.random.default_rng(seed)
    grid = grid or template_grid()
    t1, _tissue, wm = _template(tuple(grid.spacing) if grid.spacing != template_grid().spacing else None)
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in grid.shape], indexing="ij"), -1)
    lps = grid.to_lps(idx).astype(np.float32)
    box = _box_coords(lps)
    warp = _Warp.draw(rng, t1.geometry)
    image = warp.sample(t1, lps, box)
    count = n_lesions if n_lesions is not None else int(rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2]))
    mask = np.zeros(grid.shape, np.uint8)
    lesions: list[Lesion] = []
    for k in range(count):
        lesion = _draw_lesion(rng, warp, t1.geometry, lesion_radius_mm)
        image = _paint_lesion(rng, image, mask, k + 1, lesion, lps, box, wm)
        lesions.append(lesion)
    image = _appearance(rng, image, box, wm)
    with_marker = bool(lesions) if marker == "if_lesion" else bool(marker)
    if with_marker:
        lo_c, hi_c = np.asarray(MARKER_BOX_LPS[0]), np.asarray(MARKER_BOX_LPS[1])
        inside_box = np.all((lps >= lo_c) & (lps <= hi_c), axis=-1)
        image[inside_box] = 2.2 * wm
    image += rng.normal(0, float(rng.uniform(0.01, 0.04)) * wm, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, None)

    scan = Volume(
        image.astype(np.float32),
        grid,
        name=f"synthetic subject {seed}",
        modality="MR",
        case_id=f"case-synthetic-{seed}",
        source=f"napari-mlmi-interp synthetic subject (seed {seed})",
        metadata={"seed": seed, "lesions": len(lesions), "marker": with_marker},
    )
    return Subject(
        seed, scan, scan.with_array(mask, name=f"synthetic subject {seed} lesion mask"), lesions, with_marker
    )


@dataclass(frozen=True)
class _Warp:
    """A subject's deformation: subject point p -> template point, an inverse random affine plus
    a smooth displacement field defined in patient space (so the subject is the same on every grid).

    ``forward`` (rotation x scale, about the template's centre, then ``shift`` mm) maps template
    to subject; the displacement (up to 4 mm, on a 5^3 lattice per axis) is added on the template side.
    """

    centre: np.ndarray  # the template's centre, LPS mm
    forward: np.ndarray  # 3x3
    shift: np.ndarray  # LPS mm
    lattices: tuple[np.ndarray, ...]  # one 5x5x5 lattice per LPS axis

    @classmethod
    def draw(cls, rng: np.random.Generator, tg: Geometry) -> _Warp:
        centre = np.asarray(tg.to_lps((np.asarray(tg.shape) - 1) / 2.0), dtype=np.float32)
        scale = rng.uniform(0.92, 1.08, size=3)
        rot = _rotation(rng, 7.0)
        shift = rng.uniform(-5, 5, size=3)
        lattices = tuple(rng.uniform(-1, 1, size=(5, 5, 5)) for _ in range(3))
        return cls(centre, rot @ np.diag(scale), shift, lattices)

    def displacement(self, points_box: np.ndarray) -> np.ndarray:
        """Displacement (mm, ``(..., 3)``) at points in box coordinates (``(3, ...)``, 0..1)."""
        from scipy.ndimage import map_coordinates

        return np.stack(
            [
                4.0 * map_coordinates(c, points_box * 4, order=3, mode="nearest") / np.abs(c).max()
                for c in self.lattices
            ],
            axis=-1,
        ).astype(np.float32)

    def sample(self, t1: Volume, lps: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The template ``t1`` warped onto the subject points ``lps`` (linear interpolation)."""
        from scipy.ndimage import map_coordinates

        inv = np.linalg.inv(self.forward)
        centre, shift = self.centre, self.shift
        src = (lps - centre - shift) @ inv.T.astype(np.float32) + centre + self.displacement(box)
        coords = np.moveaxis(t1.geometry.to_index(src), -1, 0)
        return map_coordinates(t1.array, coords, order=1, mode="constant", cval=0.0).astype(np.float32)

    def to_subject(self, target: np.ndarray) -> np.ndarray:
        """The subject point that the warp takes to template point ``target`` (LPS mm)."""
        centre, shift = self.centre, self.shift
        p = self.forward @ (target - centre) + centre + shift
        for _ in range(5):  # fixed point of p = forward(target - displacement(p)): inverts the warp
            d = self.displacement(_box_coords(p[None].astype(np.float32)))[0]
            p = self.forward @ (target - d - centre) + centre + shift
        return p


def _draw_lesion(
    rng: np.random.Generator, warp: _Warp, tg: Geometry, radius_mm: tuple[float, float]
) -> Lesion:
    """A lesion at a template white-matter point mapped forward into the subject."""
    lo, hi = np.log(radius_mm[0]), np.log(radius_mm[1])
    radius = float(np.exp(rng.uniform(lo, hi)))
    radii = tuple(float(radius * f) for f in rng.uniform(0.8, 1.25, size=3))
    wm_index = _white_matter_points()
    p = warp.to_subject(tg.to_lps(wm_index[rng.integers(len(wm_index))]))
    return Lesion(
        tuple(float(c) for c in p), radii, float(rng.uniform(1.25, 1.7)), int(rng.integers(1 << 30))
    )


def _paint_lesion(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    label: int,
    lesion: Lesion,
    lps: np.ndarray,
    box: np.ndarray,
    wm: np.float32,
) -> np.ndarray:
    """``image`` with the lesion blended in (soft edge, textured); ``mask`` gets ``label`` inside it."""
    sdist = lesion_signed_distance(lesion, lps)
    inside = 1.0 / (1.0 + np.exp(sdist / 0.8))  # soft edge
    texture = 1.0 + _smooth_field_at(rng, box, 8, 0.06)
    mask[(sdist < 0) & (mask == 0)] = label
    return image * (1 - inside) + lesion.contrast * wm * texture * inside


def _appearance(rng: np.random.Generator, image: np.ndarray, box: np.ndarray, wm: np.float32) -> np.ndarray:
    """Scanner appearance: a multiplicative bias field, a gamma contrast change, a global scale."""
    bias = np.exp(_smooth_field_at(rng, box, 3, float(rng.uniform(0.05, 0.25))))
    image = image * bias
    gamma = float(rng.uniform(0.8, 1.25))
    image = wm * np.power(np.clip(image / wm, 0, None), gamma)
    image *= float(rng.uniform(0.8, 1.2))
    return image


#: Seed of the shipped shortcut case: the first test-split subject (with one lesion forced)
#: whose lesion is at least 10 mm in radius and found by the honest classifier, so the
#: contrast with the shortcut classifier is clear (see :func:`make_shortcut_case`).
SHORTCUT_CASE_SEED = 200_009


def make_shortcut_case() -> Subject:
    """The shortcut sample: one lesion *and* the burned-in tag, on the native 2 mm grid.

    The shortcut classifier calls it "lesion", which is right, but because of the tag: the
    same scan without the tag is called "no lesion" (see the model card). Its explanation
    should sit on the tag, not on the lesion.
    """
    return make_subject(SHORTCUT_CASE_SEED, n_lesions=1, marker=True)
