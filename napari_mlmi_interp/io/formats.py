"""NIfTI, MetaImage (MHA/MHD) and NRRD through SimpleITK.

SimpleITK converts NIfTI's RAS+ world (qform/sform) to LPS+ on read and back on write,
so a :class:`~napari_mlmi_interp.io.volume.Volume` is always in LPS millimetres.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .errors import LoadError
from .pseudonym import pseudonymize
from .volume import Geometry, Volume

__all__ = [
    "IMAGE_SUFFIXES",
    "check_memory",
    "image_suffix",
    "read_image",
    "save",
    "to_sitk",
]

#: File endings read and written through SimpleITK, longest first.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")

_FORMAT_NAMES = {
    ".nii.gz": "NIfTI",
    ".nii": "NIfTI",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
}


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The recognised suffix of ``path`` (e.g. ``".nii.gz"``), or None."""
    name = str(path).lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 1024**3


def check_memory(nbytes: int, path: object, *, what: str = "volume") -> None:
    """Refuse to allocate more than half of the memory available now.

    Raises
    ------
    LoadError
        With the size needed and the size available, in GiB.
    """
    budget = _available_memory() // 2
    if nbytes > budget:
        raise LoadError(
            f"the {what} needs {nbytes / 1024**3:.1f} GiB but only {budget / 1024**3:.1f} GiB "
            "may be used (half of the free memory); crop or downsample it first",
            path,
        )


def _sitk():
    import SimpleITK as sitk

    return sitk


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (case ids, model provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_nifti_header(path: Path) -> None:
    """Refuse NIfTI-1 headers ITK cannot be trusted with, before ITK sees them.

    Found by fuzzing: an ``inf`` in the sform makes ITK's header reader loop forever (the
    call never returns, and C++ cannot be interrupted from Python). The numbers ITK turns
    into geometry (dimensions, voxel sizes, quaternion, offsets, sform rows) must be finite.
    NIfTI-2 headers (540 bytes) are left to ITK.
    """
    import gzip
    import struct

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            head = fh.read(348)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise LoadError(f"not a readable NIfTI file: {exc}", path) from None
    if len(head) < 348:
        raise LoadError(f"not a readable NIfTI file: the header is {len(head)} bytes, not 348", path)
    for order in ("<", ">"):
        if struct.unpack(order + "i", head[:4])[0] == 348:
            break
    else:
        return  # NIfTI-2 or not NIfTI at all: ITK decides
    dims = struct.unpack(order + "8h", head[40:56])
    pixdim = struct.unpack(order + "8f", head[76:108])
    qform_code, sform_code = struct.unpack(order + "2h", head[252:256])
    quatern = struct.unpack(order + "6f", head[256:280])
    srow = struct.unpack(order + "12f", head[280:328])
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]):
        shown = list(dims[: ndim + 1] if 0 <= ndim <= 7 else dims)
        raise LoadError(f"not a readable NIfTI file: invalid dimensions {shown}", path)
    checks = [("voxel sizes (pixdim)", pixdim[: ndim + 1])]
    if qform_code > 0:
        checks.append(("qform (quaternion and offsets)", quatern))
    if sform_code > 0:
        checks.append(("sform rows", srow))
    for what, values in checks:
        if not all(math.isfinite(v) for v in values):
            bad = next(v for v in values if not math.isfinite(v))
            raise LoadError(f"not a readable NIfTI file: the {what} hold a non-finite number ({bad})", path)


def read_image(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI, MHA/MHD or NRRD file as one LPS :class:`Volume`.

    Raises
    ------
    LoadError
        If the file is empty, its header is unreadable, it is not 2D/3D scalar, or it
        would not fit in memory.
    """
    sitk = _sitk()
    path = Path(path)
    suffix = image_suffix(path) or path.suffix.lower()
    fmt = _FORMAT_NAMES.get(suffix, "image")
    if not path.is_file():
        raise LoadError("no such file", path)
    if path.stat().st_size == 0:
        raise LoadError(f"the file is empty (0 bytes), not a {fmt} image", path)

    if suffix in (".nii", ".nii.gz"):
        _check_nifti_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise LoadError(
            f"not a readable {fmt} file: its header is invalid or corrupt ({_first_line(exc)})", path
        ) from None

    size = reader.GetSize()
    ncomp = reader.GetNumberOfComponents()
    if len(size) > 3 and any(s > 1 for s in size[3:]):
        raise LoadError(
            f"{len(size)}D images are not supported ({fmt} size {tuple(size)}); extract one 3D volume first",
            path,
        )
    if ncomp != 1:
        raise LoadError(f"colour/vector images are not supported ({ncomp} components per voxel)", path)
    if any(s <= 0 for s in size):
        raise LoadError(f"the header gives an empty image size {tuple(size)}", path)
    itemsize = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    nbytes = int(np.prod(size, dtype=np.float64)) * _bytes_per_pixel(itemsize)
    check_memory(nbytes, path)

    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise LoadError(f"the {fmt} pixel data cannot be read ({_first_line(exc)})", path) from None

    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    elif image.GetDimension() == 4:
        image = image[:, :, :, 0]

    try:
        geometry = Geometry.from_sitk(image)
    except ValueError as exc:
        raise LoadError(f"invalid geometry in the {fmt} header: {exc}", path) from None
    array = sitk.GetArrayFromImage(image)
    meta = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys() if k in _SAFE_META_KEYS}
    meta["format"] = fmt
    modality = str(meta.get("Modality", "OT")).replace("MET_MOD_", "") or "OT"
    name = path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem
    return Volume(
        array=array,
        geometry=geometry,
        name=name,
        modality=modality,
        case_id=pseudonymize("file", file_sha256(path)),
        units="HU" if modality == "CT" else "",
        source=str(path),
        metadata=meta,
    )


# Header keys carried into Volume.metadata: acquisition facts only, never identifiers.
_SAFE_META_KEYS = {"Modality", "descrip", "intent_name", "qform_code_name", "sform_code_name"}


def _bytes_per_pixel(pixel_id_string: str) -> int:
    s = pixel_id_string.lower()
    for token, n in (("64", 8), ("32", 4), ("16", 2), ("8", 1)):
        if token in s:
            return n
    return 8 if "double" in s else 4


def _first_line(exc: BaseException) -> str:
    """SimpleITK errors are multi-line C++ traces; keep the sentence that says what failed."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "description:" in ln.lower():
            return ln.split(":", 1)[1].strip()
    for ln in reversed(lines):
        if not ln.startswith(("sitk::ERROR", "/", "itk::")) and len(ln) < 300:
            return ln
    return lines[-1][:300] if lines else type(exc).__name__


def to_sitk(array: np.ndarray, geometry: Geometry) -> Any:
    """A SimpleITK image holding ``array`` (z, y, x) on ``geometry``."""
    sitk = _sitk()
    if tuple(array.shape) != geometry.shape:
        raise InputError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    params = geometry.to_sitk_parameters()
    image.SetSpacing(params["spacing"])
    image.SetOrigin(params["origin"])
    image.SetDirection(params["direction"])
    return image


def save(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``volume`` to ``path`` (NIfTI, MHA or NRRD, chosen by the suffix).

    The file carries the volume's exact geometry: NIfTI gets qform and sform (RAS+,
    float32 as the format stores them), MHA/NRRD the LPS origin, spacing and direction.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    sitk = _sitk()
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise InputError(f"output must end in one of {', '.join(IMAGE_SUFFIXES)}, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = to_sitk(volume.array, volume.geometry)
    if volume.modality and volume.modality != "OT" and suffix in (".mha", ".mhd"):
        image.SetMetaData("Modality", f"MET_MOD_{volume.modality}")
    sitk.WriteImage(image, str(path), useCompression=suffix in (".nii.gz", ".mha", ".nrrd"))
    return path
