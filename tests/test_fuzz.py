"""Fuzzed readers: mutated NIfTI and DICOM bytes and header fields give a Volume or the
project's own LoadError naming the file, never another exception, a hang or a crash."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import hypothesis  # noqa: F401 - a hard dependency of the tests: a missing one fails, not skips
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_mlmi_interp.io import LoadError, load, save
from napari_mlmi_interp.io.volume import Geometry, Volume

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
ODD_FLOATS = st.sampled_from(
    [0.0, -0.0, -1.0, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), -float("inf")]
)
ODD_INTS = st.sampled_from([0, -1, 1, 2, 3, 7, 8, 255, 256, 32767, -32768])


@pytest.fixture(scope="module")
def nifti_seed(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("seed") / "seed.nii"
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    save(Volume(array, Geometry((4, 5, 6), (3.0, 1.0, 0.5), (1.0, 2.0, 3.0))), path)
    return path.read_bytes()


def check(path: Path) -> None:
    """The loader's contract on one input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            volumes = load(path)
        except LoadError as exc:
            assert path.name in str(exc) or str(path.parent) in str(exc), f"the message names no file: {exc}"
            return
    assert volumes and all(v.array.ndim == 3 for v in volumes)


#: NIfTI-1 header fields: (offset, struct format, how many values)
NIFTI_FIELDS = {
    "dim": (40, "h", 8),
    "datatype": (70, "h", 1),
    "bitpix": (72, "h", 1),
    "pixdim": (76, "f", 8),
    "vox_offset": (108, "f", 1),
    "scl_slope": (112, "f", 1),
    "qform_code": (252, "h", 1),
    "sform_code": (254, "h", 1),
    "quatern": (256, "f", 6),
    "srow": (280, "f", 12),
}


@SETTINGS
@given(
    field=st.sampled_from(sorted(NIFTI_FIELDS)),
    index=st.integers(0, 11),
    i_value=ODD_INTS,
    f_value=ODD_FLOATS,
)
def test_nifti_header_fields(tmp_path_factory, nifti_seed, field, index, i_value, f_value):
    offset, fmt, count = NIFTI_FIELDS[field]
    data = bytearray(nifti_seed)
    pos = offset + (index % count) * struct.calcsize(fmt)
    data[pos : pos + struct.calcsize(fmt)] = struct.pack("<" + fmt, i_value if fmt == "h" else f_value)
    path = tmp_path_factory.mktemp("nifti") / "mutated.nii"
    path.write_bytes(bytes(data))
    check(path)


@SETTINGS
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_nifti_bytes(tmp_path_factory, nifti_seed, edits, cut):
    data = bytearray(nifti_seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path_factory.mktemp("nifti") / "mutated.nii"
    path.write_bytes(bytes(data))
    check(path)


@pytest.fixture(scope="module")
def dicom_seed(shared_dicom) -> Path:
    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    return sorted(p for p in folder.rglob("*") if p.is_file())[0]


DICOM_FIELDS = [
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelData",
    "TransferSyntaxUID",
]


@SETTINGS
@given(field=st.sampled_from(DICOM_FIELDS), i_value=ODD_INTS, f_value=ODD_FLOATS, cut=st.integers(0, 10**6))
def test_real_dicom_header_fields(tmp_path_factory, dicom_seed, field, i_value, f_value, cut):
    import pydicom

    ds = pydicom.dcmread(dicom_seed)
    text = repr(f_value) if f_value == f_value else "nan"
    if field == "PixelData":
        ds.PixelData = ds.PixelData[: cut % (len(ds.PixelData) + 1)]
    elif field == "TransferSyntaxUID":
        ds.file_meta.TransferSyntaxUID = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.3.4"][cut % 3]
    elif field == "PixelSpacing":
        ds.PixelSpacing = [text, str(i_value)]
    elif field in ("ImagePositionPatient", "ImageOrientationPatient"):
        n = 3 if field == "ImagePositionPatient" else 6
        values = [str(float(v)) for v in ds.data_element(field).value]
        values[cut % n] = text
        ds.data_element(field).value = values[:n]
    elif field in ("RescaleSlope", "RescaleIntercept"):
        setattr(ds, field, text)
    else:
        setattr(ds, field, abs(i_value) if field != "NumberOfFrames" else str(i_value))
    path = tmp_path_factory.mktemp("dicom") / "mutated.dcm"
    try:
        ds.save_as(path)
    except Exception:  # pydicom itself refuses to write this value: nothing to read
        return
    check(path)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12))
def test_real_dicom_bytes(tmp_path_factory, dicom_seed, edits):
    data = bytearray(dicom_seed.read_bytes())
    for pos, value in edits:
        data[132 + pos % (len(data) - 132)] = value  # after the preamble: the DICOM data itself
    path = tmp_path_factory.mktemp("dicom") / "mutated.dcm"
    path.write_bytes(bytes(data))
    check(path)


@pytest.mark.slow
def test_the_mutation_runner_finds_no_hang_crash_or_foreign_exception(tmp_path):
    """Inputs run in a child process under a time limit: hangs and interpreter crashes are caught."""
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "mutate.py"), "--n", "600", "--seed", "7", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result = json.loads(out.read_text())
    assert proc.returncode == 0, result["findings"]
    assert set(result["outcomes"]) <= {"volume", "refused"} and sum(result["outcomes"].values()) == 600
