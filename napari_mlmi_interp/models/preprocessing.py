"""Invertible preprocessing: native scan -> model grid -> (maps) -> native scan.

Every geometric step (reorient, resample to the model's spacing, crop or pad to its size)
is a transformation of the *grid*, a :class:`~napari_mlmi_interp.io.Geometry` in LPS
millimetres; no voxel is touched until the end. Then the scan is resampled once, in
physical space, from its native grid onto the model grid, and any map the model grid
produces is resampled once back onto the native grid. Because both grids are placed in
the same LPS space, the inverse of the whole chain is exact up to interpolation: a point
comes back where it was. Integer crops and pads and pure reorientation (axis
permutations and flips) are exact copies, with no interpolation at all.

Intensity normalisation happens on the model grid and has no inverse (it needs none:
maps live in the model's input space, not its intensity space).

An optional last step crops the normalised model grid to the foreground's bounding box
(``input.crop``: voxels above a threshold, or a brain-extraction model's mask), plus a
margin, as brainchop does before running its MeshNets. It is an integer sub-box of the grid,
so it is inverted exactly too: a map on the crop lands on the same LPS voxels, and the rest
of the scan gets the background value. :attr:`ModelInput.crop_box` records the box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.volume import Geometry, Volume
from .spec import Crop, InputSpec, ModelError, Normalization

__all__ = [
    "ForegroundFn",
    "ModelInput",
    "Preprocessor",
    "antialias_sigma",
    "crop_box",
    "crop_grid",
    "crop_or_pad_grid",
    "reorient_grid",
    "resample_grid",
    "resample_to_grid",
    "source_digest",
]

#: ``(volume, model name) -> mask on the volume's own grid`` (non-zero = foreground): how a
#: ``crop: {to: model}`` step gets the pre-model's segmentation.
ForegroundFn = Callable[[Volume, str], np.ndarray]

_LETTER = {
    "L": np.array([1.0, 0, 0]),
    "R": np.array([-1.0, 0, 0]),
    "P": np.array([0, 1.0, 0]),
    "A": np.array([0, -1.0, 0]),
    "S": np.array([0, 0, 1.0]),
    "I": np.array([0, 0, -1.0]),
}


# -- grid steps (pure geometry) -------------------------------------------------------------------
def reorient_grid(grid: Geometry, orientation: str) -> Geometry:
    """The same voxels with axes permuted/flipped so that x, y, z point towards ``orientation``.

    ``orientation`` uses the nibabel/MONAI sense: ``"RAS"`` means the array's x axis
    (last axis) increases towards the patient's Right, y towards Anterior, z towards
    Superior. Voxel centres do not move; only their indexing does.
    """
    targets = [_LETTER[c] for c in orientation.upper()[::-1]]  # array order z, y, x
    used: list[int] = []
    perm, signs = [], []
    for t in targets:
        dots = grid.direction.T @ t  # how each source axis points along t
        order = np.argsort(-np.abs(dots))
        src = int(next(a for a in order if a not in used))
        used.append(src)
        perm.append(src)
        signs.append(1.0 if dots[src] >= 0 else -1.0)
    direction = grid.direction[:, perm] * np.array(signs)[None, :]
    origin = np.asarray(grid.origin, dtype=float).copy()
    for src, sign in zip(perm, signs, strict=True):
        if sign < 0:  # index 0 is now the far end of that axis
            origin += grid.direction[:, src] * grid.spacing[src] * (grid.shape[src] - 1)
    return Geometry(
        tuple(grid.shape[p] for p in perm),
        tuple(grid.spacing[p] for p in perm),
        tuple(origin),
        direction,
    )


def resample_grid(grid: Geometry, spacing: tuple[float, float, float]) -> Geometry:
    """A grid with ``spacing`` (z, y, x mm) covering the same box, centred on the same point."""
    old_sp = np.asarray(grid.spacing)
    new_sp = np.asarray(spacing, dtype=float)
    shape = np.maximum(1, np.round(np.asarray(grid.shape) * old_sp / new_sp)).astype(int)
    centre = grid.to_lps((np.asarray(grid.shape) - 1) / 2.0)
    origin = centre - grid.direction @ (new_sp * (shape - 1) / 2.0)
    return Geometry(tuple(shape), tuple(new_sp), tuple(origin), grid.direction)


def crop_or_pad_grid(grid: Geometry, size: tuple[int | None, int | None, int | None]) -> Geometry:
    """Centre crop or pad to ``size`` (None keeps an axis); an integer voxel shift, exact."""
    shape = np.array([grid.shape[k] if size[k] is None else int(size[k]) for k in range(3)])
    offset = (np.asarray(grid.shape) - shape) // 2  # negative: padding before
    origin = grid.to_lps(offset.astype(float))
    return Geometry(tuple(shape), grid.spacing, tuple(origin), grid.direction)


def crop_box(mask: np.ndarray, padding: tuple[int, int, int] = (0, 0, 0)) -> tuple[tuple[int, int], ...]:
    """Bounding box of ``mask``'s non-zero voxels, ``padding`` voxels wider per side, in the grid.

    Returns ``((start, stop), ...)`` per array axis (stop exclusive), clamped to the array as
    brainchop clamps its ``cropPadding`` to the 256-voxel cube. An empty mask keeps the whole
    grid (nothing to crop to).
    """
    if not np.any(mask):
        return tuple((0, int(n)) for n in mask.shape)
    box = []
    for axis, n in enumerate(mask.shape):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=others))
        pad = int(padding[axis])
        box.append((max(0, int(hit[0]) - pad), min(int(n), int(hit[-1]) + 1 + pad)))
    return tuple(box)


def crop_grid(grid: Geometry, box: tuple[tuple[int, int], ...]) -> Geometry:
    """The sub-grid ``box`` (``((start, stop), ...)`` in array order) of ``grid``: same voxel centres."""
    start = np.array([b[0] for b in box], dtype=float)
    shape = tuple(int(b[1] - b[0]) for b in box)
    return Geometry(shape, grid.spacing, tuple(grid.to_lps(start)), grid.direction)


# -- resampling between grids (physical space) ---------------------------------------------------
def resample_to_grid(
    array: np.ndarray,
    source: Geometry,
    target: Geometry,
    *,
    interpolation: str = "linear",
    default: float = 0.0,
    antialias: bool = True,
) -> np.ndarray:
    """Resample ``array`` (on ``source``) onto ``target``, matching voxels by LPS position.

    Parameters
    ----------
    interpolation : {"linear", "nearest"}
        Linear for images and maps, nearest for label masks.
    default : float
        Value outside the source grid (background).
    antialias : bool
        With linear interpolation, smooth the source first along the axes where the target
        is coarser (see :func:`antialias_sigma`), so that detail finer than the target's
        spacing is averaged, not aliased: a point keeps its centre of mass instead of
        snapping to (or missing) the nearest target voxel.
    """
    if source.same_grid(target, atol_mm=1e-6):
        return np.array(array, copy=True)
    shift = _integer_shift(source, target)
    if shift is not None:  # same spacing and direction, whole-voxel offset: copy, no interpolation
        return _shifted_copy(array, shift, target.shape, default)
    import SimpleITK as sitk

    from ..io.formats import to_sitk

    work = array.astype(np.float32) if interpolation == "linear" else array
    if interpolation == "linear" and antialias:
        sigma = antialias_sigma(source, target)
        if np.any(sigma > 0):
            from scipy.ndimage import gaussian_filter

            work = gaussian_filter(work, sigma=sigma, mode="nearest").astype(np.float32)
    image = to_sitk(work, source)
    params = target.to_sitk_parameters()
    out = sitk.Resample(
        image,
        tuple(int(s) for s in target.shape[::-1]),
        sitk.Transform(),
        sitk.sitkLinear if interpolation == "linear" else sitk.sitkNearestNeighbor,
        params["origin"],
        params["spacing"],
        params["direction"],
        float(default),
        image.GetPixelID(),
    )
    return sitk.GetArrayFromImage(out)


def antialias_sigma(source: Geometry, target: Geometry) -> np.ndarray:
    """Gaussian sigma (source voxels, per source axis) before resampling onto ``target``.

    Along each source axis the target's sampling interval is taken as the largest of its
    spacings projected on that axis; where it exceeds the source spacing ``s``, the sigma
    is ``sqrt(t**2 - s**2) / 2`` mm: the extra blur that a ``t``-spaced sampling needs
    beyond what ``s`` already has (zero when upsampling).
    """
    overlap = np.abs(source.direction.T @ target.direction)  # [source axis, target axis]
    t_eff = (overlap * np.asarray(target.spacing)[None, :]).max(axis=1)
    s = np.asarray(source.spacing)
    extra_mm = 0.5 * np.sqrt(np.clip(t_eff**2 - s**2, 0, None))
    sigma = extra_mm / s
    return np.where(t_eff > s * 1.01, sigma, 0.0)


def _integer_shift(source: Geometry, target: Geometry) -> np.ndarray | None:
    if not np.allclose(source.spacing, target.spacing, rtol=0, atol=1e-9):
        return None
    if not np.allclose(source.direction, target.direction, atol=1e-9):
        return None
    offset = source.to_index(np.asarray(target.origin))
    rounded = np.round(offset)
    return rounded.astype(int) if np.allclose(offset, rounded, atol=1e-6) else None


def _shifted_copy(
    array: np.ndarray, offset: np.ndarray, shape: tuple[int, ...], default: float
) -> np.ndarray:
    out = np.full(shape, default, dtype=array.dtype)
    src = [slice(max(0, o), min(n, o + s)) for o, n, s in zip(offset, array.shape, shape, strict=True)]
    dst = [slice(s.start - o, s.stop - o) for s, o in zip(src, offset, strict=True)]
    if all(s.stop > s.start for s in src):
        out[tuple(dst)] = array[tuple(src)]
    return out


# -- the chain ---------------------------------------------------------------------------------
@dataclass
class ModelInput:
    """A scan prepared for a model.

    Attributes
    ----------
    array : numpy.ndarray
        ``(channels, *spatial)`` float32 in the model's axis order (``zyx`` or ``xyz``).
    grid : Geometry
        The model grid in LPS mm, array order (z, y, x).
    native : Geometry
        The scan's own grid.
    source : str
        :func:`source_digest` of the volume it was made from (reuse check).
    crop_box : tuple of (start, stop), optional
        With an ``input.crop`` step: the box ``grid`` was cut from, in voxels of the uncropped
        model grid, array order (z, y, x); ``grid`` already is that box.
    """

    array: np.ndarray
    grid: Geometry
    native: Geometry
    axes: str = "zyx"
    spec: tuple[InputSpec, Normalization] | None = None  # what produced it (reuse check)
    source: str = ""
    crop_box: tuple[tuple[int, int], ...] | None = None

    def made_from(self, volume: Volume, spec: tuple[InputSpec, Normalization]) -> bool:
        """Whether this input is ``volume`` prepared by ``spec``: same voxels, same grid.

        Compared by content (:func:`source_digest`), never by object identity: a volume made
        with ``Volume.with_array`` shares its geometry object but holds other data.
        """
        return bool(self.source) and self.spec == spec and self.source == source_digest(volume)

    def tensor(self) -> Any:
        """``(1, C, *spatial)`` torch tensor."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.array))[None]


def source_digest(volume: Volume) -> str:
    """A digest of a volume's voxels (values, dtype, shape) and of its grid (``index_to_lps``).

    BLAKE2b over the raw bytes: about 10 ms for a 1-million-voxel float32 scan.
    """
    import hashlib

    array = np.ascontiguousarray(volume.array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(volume.geometry.index_to_lps, dtype=np.float64).tobytes())
    h.update(array.tobytes())
    return h.hexdigest()


class Preprocessor:
    """Native volume <-> model grid, as declared by a spec's ``input`` and ``normalization``.

    ``foreground``: how an ``input.crop`` of kind ``model`` gets that model's mask on the scan's
    grid (default: the registered model run through :func:`~.predict.predict`, cached).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        normalization: Normalization | None = None,
        *,
        foreground: ForegroundFn | None = None,
    ) -> None:
        self.input = input_spec
        self.normalization = normalization or Normalization(kind="none")
        self.foreground = foreground

    def grid_for(self, native: Geometry) -> Geometry:
        """The model grid for a scan on ``native``: reorient, resample, crop/pad.

        Without the data-dependent ``input.crop`` step: the grid it crops from (the largest
        grid the model can see, which is what memory and time estimates need).
        """
        grid = native
        if self.input.orientation:
            grid = reorient_grid(grid, self.input.orientation)
        if self.input.spacing_mm is not None:
            grid = resample_grid(grid, self.input.spacing_mm)
        if self.input.size is not None:
            grid = crop_or_pad_grid(grid, self.input.size)
        elif self.input.patch_size is not None:  # pad only where smaller than one patch
            grid = crop_or_pad_grid(
                grid,
                tuple(p if n < p else None for n, p in zip(grid.shape, self.input.patch_size, strict=True)),
            )
        k = self.input.divisible_by
        if k and any(n % k for n in grid.shape):
            grid = crop_or_pad_grid(grid, tuple(-(-n // k) * k for n in grid.shape))
        return grid

    def forward(self, volume: Volume, *, grid: Geometry | None = None) -> ModelInput:
        """Resample onto the model grid, normalise, crop (``input.crop``); returns the model's input.

        ``grid``: the model grid before the crop (default :meth:`grid_for`).
        """
        grid = grid or self.grid_for(volume.geometry)
        background = float(volume.array.min()) if volume.array.size else 0.0
        data = resample_to_grid(
            volume.array, volume.geometry, grid, default=background, antialias=self.input.antialias
        ).astype(np.float32)
        data = normalize(data, self.normalization)
        box = None
        if self.input.crop is not None:
            box = self.crop_box_for(volume, data, grid)
            data = data[tuple(slice(a, b) for a, b in box)]
            grid = crop_grid(grid, box)
        channels = data[None]
        if self.input.channels != 1:
            raise ModelError(
                f"the model expects {self.input.channels} input channels, the scan '{volume.name}' has 1"
            )
        if self.input.axes == "xyz":
            channels = np.transpose(channels, (0, 3, 2, 1))
        return ModelInput(
            np.ascontiguousarray(channels),
            grid,
            volume.geometry,
            self.input.axes,
            (self.input, self.normalization),
            source_digest(volume),
            box,
        )

    def crop_box_for(
        self, volume: Volume, normalized: np.ndarray, grid: Geometry
    ) -> tuple[tuple[int, int], ...]:
        """The ``input.crop`` box on ``grid`` (``normalized``: the scan on it, normalised), (z, y, x)."""
        crop: Crop = self.input.crop  # type: ignore[assignment]
        if crop.to == "foreground":
            level = crop.threshold * float(normalized.max()) if crop.threshold > 0 else 0.0
            mask = normalized > level
        else:
            native_mask = self._foreground_fn()(volume, str(crop.model))
            if native_mask.shape != volume.shape:
                raise ModelError(
                    f"the crop model '{crop.model}' gave a mask of shape {native_mask.shape} "
                    f"for a scan of shape {volume.shape}"
                )
            mask = self.forward_mask((native_mask > 0).astype(np.uint8), volume.geometry, grid) > 0
        pad = tuple(round(crop.padding_mm / s) for s in grid.spacing)
        return crop_box(mask, pad)

    def _foreground_fn(self) -> ForegroundFn:
        if self.foreground is not None:
            return self.foreground
        from .predict import model_foreground  # the pre-model is a model like any other

        return model_foreground

    def forward_mask(self, mask: np.ndarray, native: Geometry, grid: Geometry) -> np.ndarray:
        """A native-grid label mask on the model grid (nearest neighbour), array order (z, y, x)."""
        return resample_to_grid(mask, native, grid, interpolation="nearest", default=0)

    def to_model_axes(self, array: np.ndarray) -> np.ndarray:
        """(z, y, x) spatial array -> the model's axis order."""
        return np.transpose(array, (2, 1, 0)) if self.input.axes == "xyz" else array

    def from_model_axes(self, array: np.ndarray) -> np.ndarray:
        """The model's spatial axis order -> (z, y, x)."""
        return np.transpose(array, (2, 1, 0)) if self.input.axes == "xyz" else array

    def inverse(
        self,
        model_map: np.ndarray,
        model_input: ModelInput,
        *,
        interpolation: str = "linear",
        default: float = 0.0,
    ) -> np.ndarray:
        """A map on the model grid (spatial dims in the model's axis order) -> the native grid."""
        spatial = self.from_model_axes(np.asarray(model_map))
        if spatial.shape != model_input.grid.shape:
            raise ModelError(
                f"map shape {spatial.shape} does not match the model grid {model_input.grid.shape}"
            )
        return resample_to_grid(
            spatial, model_input.grid, model_input.native, interpolation=interpolation, default=default
        )


def normalize(array: np.ndarray, norm: Normalization) -> np.ndarray:
    """Apply ``norm`` to a float32 array (model grid)."""
    a = array.astype(np.float32, copy=False)
    if norm.kind == "none":
        return a
    if norm.kind == "zscore":
        region = a[a != 0] if norm.nonzero and np.any(a != 0) else a
        mean, sd = float(region.mean()), float(region.std())
        out = (a - mean) / (sd if sd > 0 else 1.0)
        if norm.nonzero:
            out[a == 0] = 0.0
        return out.astype(np.float32)
    if norm.kind == "minmax":
        lo, hi = float(a.min()), float(a.max())
        return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if norm.kind == "quantile":
        lo, hi = brainchop_quantiles(a, norm.lower / 100.0, norm.upper / 100.0)
        return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if norm.kind == "percentile":
        lo, hi = np.percentile(a, [norm.lower, norm.upper])
        hi = hi if hi > lo else lo + 1.0
        return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32)
    lo = norm.center - norm.width / 2
    return np.clip((a - lo) / norm.width, 0, 1).astype(np.float32)


def brainchop_quantiles(array: np.ndarray, lower: float, upper: float) -> tuple[float, float]:
    """The values brainchop's ``calculateQuantiles`` picks (``lower``, ``upper`` in 0..1).

    brainchop sorts the ``n`` voxel values and takes the one at index ``floor(n * lower)``
    and the one at ``ceil(n * upper) - 1`` (no interpolation); a partial sort finds the same
    two values.
    """
    flat = np.ravel(array)
    n = flat.size
    lo_i = int(np.floor(n * lower))
    hi_i = max(lo_i, min(n - 1, int(np.ceil(n * upper)) - 1))
    part = np.partition(flat, (lo_i, hi_i))
    return float(part[lo_i]), float(part[hi_i])
