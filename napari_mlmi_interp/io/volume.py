"""Volumes in physical space.

Axis convention, used everywhere in the package: arrays are indexed ``(i0, i1, i2)``
in the order SimpleITK returns them, i.e. ``(z, y, x)`` = (slice, row, column).
Every geometric quantity of a :class:`Geometry` is given *in that same axis order*:

- ``spacing[k]`` is the distance in mm between neighbours along array axis ``k``;
- ``direction[:, k]`` is the unit vector, in patient LPS coordinates, of array axis ``k``;
- ``origin`` is the LPS position (mm) of the centre of voxel ``(0, 0, 0)``.

So ``index_to_lps = [[direction @ diag(spacing), origin], [0, 0, 0, 1]]`` maps an array
index to patient LPS millimetres (L = +x towards the patient's left, P = +y towards the
posterior, S = +z towards the head), which is the DICOM patient coordinate system.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["Geometry", "Volume"]

# Directions whose columns deviate from orthonormal by more than this are refused:
# SimpleITK, NIfTI qform and napari's rotation all assume a rotation (+ reflection).
_ORTHO_TOL = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Where a 3D voxel grid lies in patient space.

    Parameters
    ----------
    shape : tuple of int
        Array shape ``(z, y, x)``.
    spacing : tuple of float
        Voxel spacing in mm, in array axis order ``(z, y, x)``.
    origin : tuple of float
        LPS position in mm of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3x3 matrix whose column ``k`` is the LPS unit vector of array axis ``k``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        direction = np.array(self.direction, dtype=float).reshape(3, 3)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"shape must be three positive sizes (z, y, x), got {self.shape}")
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise InputError(f"spacing must be three positive finite mm values, got {self.spacing}")
        if len(origin) != 3 or not all(math.isfinite(o) for o in origin):
            raise InputError(f"origin must be three finite mm values, got {self.origin}")
        deviation = np.abs(direction.T @ direction - np.eye(3)).max()
        if not np.isfinite(deviation) or deviation > _ORTHO_TOL:
            raise InputError(
                "direction must be orthonormal (a rotation, possibly with a reflection), "
                f"got columns deviating by {deviation:.3g}"
            )
        direction.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # -- matrices -------------------------------------------------------------------
    @property
    def index_to_lps(self) -> np.ndarray:
        """4x4 matrix: homogeneous array index ``(i0, i1, i2, 1)`` -> LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    @property
    def lps_to_index(self) -> np.ndarray:
        """4x4 inverse of :attr:`index_to_lps`."""
        return np.linalg.inv(self.index_to_lps)

    def to_lps(self, index: Any) -> np.ndarray:
        """Map array indices (``(..., 3)``, continuous allowed) to LPS mm."""
        idx = np.asarray(index, dtype=float)
        m = self.index_to_lps
        return idx @ m[:3, :3].T + m[:3, 3]

    def to_index(self, lps: Any) -> np.ndarray:
        """Map LPS mm points (``(..., 3)``) to continuous array indices."""
        pts = np.asarray(lps, dtype=float)
        m = self.lps_to_index
        return pts @ m[:3, :3].T + m[:3, 3]

    # -- constructors -----------------------------------------------------------------
    @classmethod
    def from_index_to_lps(cls, matrix: Any, shape: tuple[int, int, int]) -> Geometry:
        """Decompose a 4x4 index->LPS matrix (no shear) into a :class:`Geometry`.

        Raises
        ------
        InputError
            If the matrix is not 4x4, has a zero-length axis or contains shear (a
            ``ValueError`` too).
        """
        m = np.asarray(matrix, dtype=float)
        if m.shape != (4, 4):
            raise InputError(f"index_to_lps must be a 4x4 matrix, got shape {m.shape}")
        linear = m[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
            raise InputError(f"index_to_lps has an axis of zero or infinite length: {spacing}")
        return cls(tuple(shape), tuple(spacing), tuple(m[:3, 3]), linear / spacing[None, :])

    # -- axis permutations (exact: no resampling) ---------------------------------------
    def nearest_lps_permutation(self) -> tuple[int, int, int]:
        """Array axes reordered so that new axis ``k`` is the one closest to LPS axis ``k``.

        napari slices a layer only along data axes that map to the same-numbered world
        axes; with world = (L, P, S) an axial (z, y, x) array is shown as its (x, y, z)
        transpose. The permutation changes no voxel position.
        """
        from itertools import permutations

        weight = np.abs(self.direction)  # [lps axis, array axis]
        best = max(permutations(range(3)), key=lambda p: sum(weight[k, p[k]] for k in range(3)))
        return (int(best[0]), int(best[1]), int(best[2]))

    def transposed(self, axes: tuple[int, int, int]) -> Geometry:
        """Geometry of ``array.transpose(axes)``: the same voxels, axes reordered."""
        if sorted(axes) != [0, 1, 2]:
            raise InputError(f"axes must be a permutation of (0, 1, 2), got {axes}")
        return Geometry(
            tuple(self.shape[a] for a in axes),
            tuple(self.spacing[a] for a in axes),
            self.origin,
            self.direction[:, list(axes)],
        )

    # -- sitk bridge (SimpleITK uses x, y, z order) -------------------------------------
    def to_sitk_parameters(self) -> dict[str, tuple[float, ...]]:
        """Spacing, origin and direction in SimpleITK's (x, y, z) convention."""
        d_xyz = self.direction[:, ::-1]  # column k of SimpleITK's matrix is its axis k (x first)
        return {
            "spacing": tuple(self.spacing[::-1]),
            "origin": tuple(self.origin),
            "direction": tuple(d_xyz.ravel()),
        }

    @classmethod
    def from_sitk(cls, image: Any) -> Geometry:
        """Geometry of a 3D SimpleITK image."""
        size_xyz = image.GetSize()
        d_xyz = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
        return cls(
            tuple(size_xyz[::-1]),
            tuple(image.GetSpacing()[::-1]),
            tuple(image.GetOrigin()),
            d_xyz[:, ::-1],
        )

    # -- descriptions --------------------------------------------------------------------
    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def orientation_code(self) -> str:
        """Three letters: which patient direction each array axis (z, y, x) increases towards.

        For example ``"SPL"`` for an axial stack stored feet-to-head with anterior rows first.
        """
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for k in range(3):
            col = self.direction[:, k]
            axis = int(np.argmax(np.abs(col)))
            code += letters[axis][0] if col[axis] > 0 else letters[axis][1]
        return code

    def acquisition_plane(self) -> str:
        """``"axial"``, ``"coronal"`` or ``"sagittal"``: the plane of the slices (array axes y, x).

        Chosen by the patient axis closest to the slice normal (array axis z).
        """
        axis = int(np.argmax(np.abs(self.direction[:, 0])))
        return ("sagittal", "coronal", "axial")[axis]

    def is_oblique(self, tol_degrees: float = 0.5) -> bool:
        """Whether any axis is tilted by more than ``tol_degrees`` from the nearest LPS axis."""
        cosines = np.abs(self.direction).max(axis=0)
        return bool(np.any(np.degrees(np.arccos(np.clip(cosines, -1, 1))) > tol_degrees))

    def same_grid(self, other: Geometry, *, atol_mm: float = 1e-4) -> bool:
        """Whether two grids have the same shape and the same voxel positions."""
        if self.shape != other.shape:
            return False
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.shape], indexing="ij"))
        corners = corners.reshape(3, -1).T
        return bool(np.abs(self.to_lps(corners) - other.to_lps(corners)).max() <= atol_mm)


@dataclass
class Volume:
    """A 3D scan in physical space.

    Attributes
    ----------
    array : numpy.ndarray
        Voxel values indexed ``(z, y, x)``. CT values are Hounsfield units (rescale applied).
    geometry : Geometry
        Spacing, origin and direction; see the module docstring for the axis convention.
    name : str
        Readable name: series description, with echo/phase/orientation suffixes when a
        series was split.
    modality : str
        DICOM modality (``"CT"``, ``"MR"``, ...), or ``"OT"`` when unknown.
    case_id : str
        Pseudonymous identifier (salted hash of study/series identifiers or file content);
        never the patient's name or ID.
    window : tuple of float or None
        Display window ``(centre, width)`` from the source, when present.
    units : str
        Units of the voxel values (``"HU"`` for CT, ``""`` when arbitrary).
    source : str
        Path the volume was read from (file or folder).
    warnings : list of str
        Non-fatal problems found while reading (each one sentence, with numbers).
    metadata : dict
        Non-identifying acquisition facts (series description, echo time, transfer
        syntax, ...). Never patient name, ID or birth date.
    references : dict
        DICOM UIDs of the source (study, series, frame of reference, SOP class, instances),
        kept in memory so exports (DICOM maps, the ratings' Structured Reports) can reference
        their source; never written to the study database or shown by :meth:`describe`.
    """

    array: np.ndarray
    geometry: Geometry
    name: str = "volume"
    modality: str = "OT"
    case_id: str = ""
    window: tuple[float, float] | None = None
    units: str = ""
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    references: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputError(f"array must be 3D (z, y, x), got {self.array.ndim}D")
        if tuple(self.array.shape) != self.geometry.shape:
            raise InputError(
                f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}"
            )

    # Shorthands so callers need not reach into .geometry for the common facts.
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, array order (z, y, x)."""
        return self.geometry.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS mm of voxel (0, 0, 0)."""
        return self.geometry.origin

    @property
    def direction(self) -> np.ndarray:
        """3x3; column k is the LPS unit vector of array axis k."""
        return self.geometry.direction

    @property
    def index_to_lps(self) -> np.ndarray:
        """4x4 matrix from array index (z, y, x) to LPS mm."""
        return self.geometry.index_to_lps

    def transposed(self, axes: tuple[int, int, int]) -> Volume:
        """The same volume with array axes reordered (a view of the array, no copy)."""
        return replace(
            self,
            array=np.transpose(self.array, axes),
            geometry=self.geometry.transposed(axes),
            warnings=list(self.warnings),
            metadata=dict(self.metadata),
        )

    def with_array(self, array: np.ndarray, *, name: str | None = None) -> Volume:
        """A new Volume on the same grid (a map, a mask) carrying this one's geometry."""
        return Volume(
            array=array,
            geometry=self.geometry,
            name=name or self.name,
            modality=self.modality,
            case_id=self.case_id,
            source=self.source,
            metadata=dict(self.metadata),
            references=dict(self.references),
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (no voxel data)."""
        g = self.geometry
        return {
            "name": self.name,
            "case_id": self.case_id,
            "modality": self.modality,
            "shape": list(g.shape),
            "axes": ["z", "y", "x"],
            "spacing_mm": [round(s, 6) for s in g.spacing],
            "origin_lps_mm": [round(o, 6) for o in g.origin],
            "direction": np.round(g.direction, 8).tolist(),
            "index_to_lps": np.round(g.index_to_lps, 8).tolist(),
            "orientation": g.orientation_code(),
            "oblique": g.is_oblique(),
            "dtype": str(self.array.dtype),
            "units": self.units,
            "window": list(self.window) if self.window else None,
            "source": self.source,
            "warnings": list(self.warnings),
        }
