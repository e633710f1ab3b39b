"""Model specs: how to load a model, what it predicts, and what input it expects.

A spec is a YAML or JSON sidecar (or a :class:`ModelSpec` built in Python)::

    name: my-lesion-classifier
    task: classification            # or segmentation
    classes: [no lesion, lesion]
    format: state_dict              # torchscript|state_dict|tfjs|monai_bundle|torch_export|onnx|auto
    weights: classifier.pt          # relative to the spec file (tfjs: the model.json)
    architecture: monai:DenseNet121 # or package.module:Class
    architecture_kwargs: {spatial_dims: 3, in_channels: 1, out_channels: 2}
    input:
      channels: 1
      spacing_mm: [3.0, 3.0, 3.0]   # array order (z, y, x); omit for the native spacing
      size: [48, 64, 48]            # fixed input (crop/pad); or patch_size for sliding windows
      orientation: LPS              # x, y, z letters (ITK/MONAI sense); omit to keep the scan's
      axes: zyx                     # array order the model expects: zyx (SimpleITK) or xyz (nibabel/MONAI)
      antialias: true               # Gaussian pre-smoothing when downsampling (false: plain linear)
      crop: {to: foreground, threshold: 0.2, padding_mm: 0}   # or {to: model, model: NAME}
    normalization: {kind: zscore, nonzero: true}   # zscore | percentile | window | none
    cam_layers: [features.denseblock4]
    prototype: false
    domain:                         # optional: the data the model was trained on (see Domain)
      modality: [MR]
      body_region: [BRAIN, HEAD]
      plane: [axial]
      spacing_mm: [2.0, 3.0]
      intensity_percentiles: [1, 99]
      intensity_range: [[0, 0], [150, 300]]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlmiError

__all__ = ["Crop", "Domain", "InputSpec", "ModelError", "ModelSpec", "Normalization"]

_TASKS = ("classification", "segmentation")
_FORMATS = ("torchscript", "state_dict", "tfjs", "monai_bundle", "torch_export", "onnx", "auto")
_NORMS = ("zscore", "percentile", "window", "minmax", "quantile", "none")
_CROPS = ("foreground", "model")
_PLANES = ("axial", "coronal", "sagittal")


class ModelError(MlmiError, ValueError):
    """A model or its spec cannot be used. The message says which file and why, in one sentence."""


@dataclass
class Normalization:
    """Intensity normalisation applied on the model grid.

    kind: ``zscore`` (mean 0, sd 1; over non-zero voxels with ``nonzero``), ``percentile``
    (``lower``/``upper`` percentiles mapped to 0..1, clipped), ``window`` (an HU window
    ``center``/``width`` mapped to 0..1, clipped), ``minmax`` (the grid's minimum and maximum
    mapped to 0..1), ``quantile`` (brainchop's quantile normalisation: the sorted voxel values
    at ``floor(n * lower / 100)`` and ``ceil(n * upper / 100) - 1`` mapped to 0 and 1, not
    clipped) or ``none``.
    """

    kind: str = "zscore"
    nonzero: bool = True
    lower: float = 0.5
    upper: float = 99.5
    center: float = 40.0
    width: float = 400.0

    def __post_init__(self) -> None:
        if self.kind not in _NORMS:
            raise ModelError(f"normalization kind must be one of {', '.join(_NORMS)}, got {self.kind!r}")
        if self.kind in ("percentile", "quantile") and not 0 <= self.lower < self.upper <= 100:
            raise ModelError(
                f"percentiles must satisfy 0 <= lower < upper <= 100, got {self.lower}, {self.upper}"
            )
        if self.kind == "window" and self.width <= 0:
            raise ModelError(f"window width must be positive, got {self.width}")


@dataclass
class Crop:
    """Crop the model grid to the foreground's bounding box (invertible: an integer sub-box).

    to: ``foreground`` (voxels of the normalised model-grid image above ``threshold`` times its
    maximum; any voxel above 0 when ``threshold`` is 0, as brainchop's ``autoThreshold``) or
    ``model`` (voxels the segmentation model named ``model`` labels as non-background, e.g. a
    brain-extraction model: brainchop's ``preModelId``). ``padding_mm``: margin added on every
    side of the box, in mm (brainchop's ``cropPadding``, in 1 mm voxels), clamped to the grid.
    """

    to: str = "foreground"
    threshold: float = 0.0
    padding_mm: float = 0.0
    model: str | None = None

    def __post_init__(self) -> None:
        if self.to not in _CROPS:
            raise ModelError(f"input crop 'to' must be one of {', '.join(_CROPS)}, got {self.to!r}")
        if not 0 <= float(self.threshold) <= 1:
            raise ModelError(f"input crop threshold must be in [0, 1], got {self.threshold}")
        if float(self.padding_mm) < 0:
            raise ModelError(f"input crop padding_mm must be >= 0, got {self.padding_mm}")
        if self.to == "model" and not self.model:
            raise ModelError("input crop to 'model' needs the name of that model ('model: NAME')")
        self.threshold, self.padding_mm = float(self.threshold), float(self.padding_mm)


@dataclass
class InputSpec:
    """What the network takes. Sizes and spacings are in array order ``(z, y, x)``."""

    channels: int = 1
    spacing_mm: tuple[float, float, float] | None = None
    size: tuple[int, int, int] | None = None
    patch_size: tuple[int, int, int] | None = None
    orientation: str | None = None
    axes: str = "zyx"
    antialias: bool = True
    crop: Crop | None = None
    #: pad the model grid (centred) up to a multiple of this many voxels on every axis: what an
    #: encoder-decoder needs to run on the whole grid (a UNet with four stride-2 levels: 16)
    divisible_by: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.crop, dict):
            try:
                self.crop = Crop(**self.crop)
            except TypeError as exc:
                raise ModelError(f"invalid input crop: {exc}") from None
        if self.channels < 1:
            raise ModelError(f"input channels must be >= 1, got {self.channels}")
        for name in ("spacing_mm", "size", "patch_size"):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(value)
            if len(value) != 3 or any(v <= 0 for v in value):
                raise ModelError(f"input {name} must be three positive numbers (z, y, x), got {list(value)}")
            setattr(
                self,
                name,
                tuple(float(v) for v in value) if name == "spacing_mm" else tuple(int(v) for v in value),
            )
        if self.size is not None and self.patch_size is not None:
            raise ModelError("give input size (fixed input) or patch_size (sliding windows), not both")
        if self.divisible_by is not None:
            if int(self.divisible_by) < 1:
                raise ModelError(f"input divisible_by must be a whole number >= 1, got {self.divisible_by}")
            if self.crop is not None:
                raise ModelError(
                    "input divisible_by and crop cannot be combined (the crop's box is data-dependent)"
                )
            self.divisible_by = int(self.divisible_by)
        if self.orientation is not None:
            o = self.orientation.upper()
            axis_of = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
            if len(o) != 3 or any(c not in axis_of for c in o) or sorted(axis_of[c] for c in o) != [0, 1, 2]:
                raise ModelError(
                    "orientation must be three letters, one of L/R, P/A and S/I each (e.g. 'RAS'), "
                    f"got {self.orientation!r}"
                )
            self.orientation = o
        if self.axes not in ("zyx", "xyz"):
            raise ModelError(f"input axes must be 'zyx' or 'xyz', got {self.axes!r}")


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"domain {name} must be two numbers [min, max], got {value!r}") from None
    if not lo <= hi:
        raise ModelError(f"domain {name} must be [min, max] with min <= max, got {[lo, hi]}")
    return lo, hi


def _names(name: str, value: Any, *, upper: bool) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ModelError(f"domain {name} must be a non-empty list of names, got {value!r}")
    return [v.strip().upper() if upper else v.strip().lower() for v in value]


@dataclass
class Domain:
    """The data a model was trained on, so a scan far from it can be flagged (all optional).

    Attributes
    ----------
    modality : list of str, optional
        DICOM Modality values (``["MR"]``), compared with the scan's modality when known.
    body_region : list of str, optional
        DICOM BodyPartExamined values (``["BRAIN", "HEAD"]``), compared when the scan has one.
    plane : list of str, optional
        Acquisition planes (``axial``, ``coronal``, ``sagittal``): the patient axis closest to
        the slice normal. Not checked for near-isotropic scans (largest / smallest spacing
        <= 1.1), where the plane says nothing about the resolution the model sees.
    spacing_mm : [min, max], optional
        Range of voxel spacings (mm) of the training scans, every axis.
    intensity_percentiles : [low, high]
        Which percentiles of the raw scan (before normalisation) ``intensity_range`` describes.
    intensity_range : [[min, max], [min, max]], optional
        Over the training scans: the range of the low percentile and that of the high one,
        in the scan's own units (HU for CT, scanner units for MR).
    min_fov_fraction : float, optional
        The scan must cover at least this fraction of the model's fixed input extent along
        each patient axis (the rest is padding the model never saw in training).
    computed_from : str
        How the figures were obtained (data set, script), for the reader of the spec.
    """

    modality: list[str] | None = None
    body_region: list[str] | None = None
    plane: list[str] | None = None
    spacing_mm: tuple[float, float] | None = None
    intensity_percentiles: tuple[float, float] = (1.0, 99.0)
    intensity_range: tuple[tuple[float, float], tuple[float, float]] | None = None
    min_fov_fraction: float | None = None
    computed_from: str = ""

    def __post_init__(self) -> None:
        self.modality = _names("modality", self.modality, upper=True)
        self.body_region = _names("body_region", self.body_region, upper=True)
        self.plane = _names("plane", self.plane, upper=False)
        if self.plane is not None and any(p not in _PLANES for p in self.plane):
            raise ModelError(f"domain plane must be among {', '.join(_PLANES)}, got {self.plane}")
        if self.spacing_mm is not None:
            self.spacing_mm = _pair("spacing_mm", self.spacing_mm)
            if self.spacing_mm[0] <= 0:
                raise ModelError(f"domain spacing_mm must be positive, got {list(self.spacing_mm)}")
        lo, hi = _pair("intensity_percentiles", self.intensity_percentiles)
        if not 0 <= lo < hi <= 100:
            raise ModelError(
                f"domain intensity_percentiles must satisfy 0 <= low < high <= 100, got {[lo, hi]}"
            )
        self.intensity_percentiles = (lo, hi)
        if self.intensity_range is not None:
            try:
                low, high = self.intensity_range
            except (TypeError, ValueError):
                raise ModelError(
                    "domain intensity_range must be [[min, max] of the low percentile, [min, max] of the "
                    f"high one], got {self.intensity_range!r}"
                ) from None
            self.intensity_range = (_pair("intensity_range", low), _pair("intensity_range", high))
        if self.min_fov_fraction is not None and not 0 < float(self.min_fov_fraction) <= 1:
            raise ModelError(f"domain min_fov_fraction must be in (0, 1], got {self.min_fov_fraction}")
        if self.min_fov_fraction is not None:
            self.min_fov_fraction = float(self.min_fov_fraction)


@dataclass
class ModelSpec:
    """Everything needed to load a model and feed it a volume."""

    name: str
    task: str
    classes: list[str]
    format: str = "auto"
    weights: str | None = None
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    input: InputSpec = field(default_factory=InputSpec)
    normalization: Normalization = field(default_factory=Normalization)
    cam_layers: list[str] = field(default_factory=list)
    prototype: bool = False
    prototype_metadata: str | None = None
    domain: Domain | None = None
    description: str = ""
    card: str | None = None
    source: str = ""  # where the spec came from: a file, "builtin", or "entry point <name>"

    def __post_init__(self) -> None:
        if not self.name:
            raise ModelError("a model spec needs a name")
        if self.task not in _TASKS:
            raise ModelError(f"task must be 'classification' or 'segmentation', got {self.task!r}")
        if not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise ModelError(f"classes must be a non-empty list of names, got {self.classes!r}")
        if self.format not in _FORMATS:
            raise ModelError(f"format must be one of {', '.join(_FORMATS)}, got {self.format!r}")
        if isinstance(self.input, dict):
            self.input = InputSpec(**self.input)
        if isinstance(self.normalization, dict):
            self.normalization = Normalization(**self.normalization)
        if isinstance(self.domain, dict):
            self.domain = Domain(**self.domain)
        self.classes = list(self.classes)

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, base: str | os.PathLike[str] | None = None, source: str = ""
    ) -> ModelSpec:
        """Build a spec from a mapping; relative ``weights``/``card`` paths resolve against ``base``."""
        if not isinstance(data, dict):
            raise ModelError(f"a model spec must be a mapping of fields, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown spec field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        data = dict(data)
        try:
            data["input"] = InputSpec(**(data.get("input") or {}))
            data["normalization"] = Normalization(**(data.get("normalization") or {}))
            if data.get("domain") is not None:
                data["domain"] = Domain(**data["domain"])
        except TypeError as exc:
            raise ModelError(f"invalid spec: {exc}") from None
        if base is not None:
            for key in ("weights", "card", "prototype_metadata"):
                if data.get(key) and not Path(data[key]).is_absolute():
                    data[key] = str(Path(base) / data[key])
            crop = data["input"].crop
            if crop is not None and crop.model and not Path(crop.model).is_absolute():
                beside = Path(base) / crop.model  # a spec file beside this one, else a name
                if beside.is_file():
                    crop.model = str(beside)
        data.setdefault("source", source)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"invalid spec: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read a YAML (``.yaml``/``.yml``) or JSON spec file."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such spec file")
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:
            raise ModelError(
                f"{path}: not a valid {path.suffix.lstrip('.').upper() or 'spec'} file ({exc})"
            ) from None
        try:
            return cls.from_dict(data, base=path.parent, source=str(path))
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (round-trips through :meth:`from_dict`)."""
        out = asdict(self)
        for key in ("spacing_mm", "size", "patch_size"):
            if out["input"][key] is not None:
                out["input"][key] = list(out["input"][key])
        if out["domain"] is not None:
            out["domain"] = json.loads(json.dumps(out["domain"]))  # tuples -> lists
        return out

    def summary(self) -> dict[str, Any]:
        """The fields ``mlmi-interp models --json`` prints."""
        return {
            "name": self.name,
            "task": self.task,
            "classes": list(self.classes),
            "prototype": bool(self.prototype),
            "format": self.format,
            "source": self.source,
            "description": self.description,
        }
