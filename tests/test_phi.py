"""No patient identity anywhere the plugin writes: a DICOM carrying a name, an ID and a birth
date goes through info, explain (with the cache), evaluate, a batch, its report and the CLI;
none of the three appears in any file written, any file or folder name, or any output."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import torch  # noqa: F401 - a hard dependency: a broken install fails, not skips

from napari_mlmi_interp.cli import main

from .dicom_factory import PHI, axial_positions, write_series

#: whole values: searched in every byte (binary files too)
NEEDLES = [
    PHI["PatientName"],
    "Doe Jane",
    "Jane Doe",
    PHI["PatientID"],
    PHI["PatientBirthDate"],
    "1960-01-01",
]
#: name parts: searched as words in text, with embedded pictures (base64) left out, where three
#: random letters would otherwise match by chance
WORDS = re.compile(rb"\b(doe|jane)\b", re.IGNORECASE)
BASE64 = re.compile(rb"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


def _leaks(blob: bytes) -> list[str]:
    low = blob.lower()
    found = [n for n in NEEDLES if n.lower().encode() in low]
    if b"\x00" not in blob[:4096]:  # text: also the name's parts as words
        found += [m.decode() for m in WORDS.findall(BASE64.sub(b"", blob))]
    return found


def _scan_tree(root: Path) -> dict[str, list[str]]:
    """Every file under ``root`` (gzip-decompressed too) and every path name, with its leaks."""
    found = {}
    for path in root.rglob("*"):
        leaks = _leaks(str(path.relative_to(root)).encode())
        if path.is_file():
            data = path.read_bytes()
            leaks += _leaks(data)
            if path.name.endswith(".gz"):
                leaks += _leaks(gzip.decompress(data))
        if leaks:
            found[str(path)] = leaks
    return found


@pytest.mark.slow
def test_no_name_id_or_birth_date_in_outputs_caches_reports_or_logs(tmp_path, capsys):
    source = tmp_path / "in" / "series"
    write_series(source, axial_positions(16, spacing=3.0), rows=24, cols=24, description="t1 axial")
    out = tmp_path / "out"
    outputs = []
    assert main(["info", str(source), "--json"]) == 0
    outputs.append(capsys.readouterr())
    explain = ["explain", str(source), "--model", "lesion-classifier", "--method", "saliency"]
    explain += ["--target", "lesion", "--cache", str(out / "cache"), "--json"]
    assert main([*explain, "--out", str(out / "explain")]) == 0
    outputs.append(capsys.readouterr())
    assert main([*explain, "--out", str(out / "explain2")]) == 0  # again: a cache hit
    outputs.append(capsys.readouterr())
    the_map = json.loads(outputs[1].out)["map"]
    assert main(["evaluate", the_map, "--scan", str(source), "--json"]) == 0
    outputs.append(capsys.readouterr())
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"scan\n{source}\n")
    batch = ["batch", str(manifest), "--model", "lesion-classifier", "--method", "saliency", "--workers", "0"]
    assert main([*batch, "--out", str(out / "batch")]) == 0
    outputs.append(capsys.readouterr())
    assert main(["report", str(out / "batch"), "--out", str(out / "report.html")]) == 0
    outputs.append(capsys.readouterr())
    # DICOM exports into the source study: the patient pseudonymised
    assert main([*batch, "--out", str(out / "batch_dicom"), "--dicom"]) == 0
    outputs.append(capsys.readouterr())
    assert any((out / "batch_dicom").rglob("parametric_map.dcm"))
    assert any((out / "cache").rglob("meta.json")) and (out / "report.html").is_file()
    assert _scan_tree(out) == {}
    # only when asked for, the exports carry the identity (and this test would see it)
    kept = tmp_path / "kept"
    assert main([*batch, "--out", str(kept), "--dicom-keep-identity"]) == 0
    capsys.readouterr()
    leaked = _scan_tree(kept)
    assert leaked and all("/dicom/" in path for path in leaked)
    for captured in outputs:
        assert _leaks((captured.out + captured.err).encode()) == []
    # the reader itself keeps them out of the volume's metadata and description
    from napari_mlmi_interp.io import load

    (volume,) = load(source)
    assert _leaks(json.dumps(volume.describe(), default=str).encode()) == []
    assert _leaks(json.dumps(volume.metadata, default=str).encode()) == []


#: a patient's name and birth date in a folder and a file name
NAME_PARTS = [b"doe^jane", b"doe_jane", b"jane", b"19700101"]


def _name_leaks(blob: bytes) -> list[str]:
    low = BASE64.sub(b"", blob).lower() if b"\x00" not in blob[:4096] else blob.lower()
    return [n.decode() for n in NAME_PARTS if n in low]


def _name_tree(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*"):
        leaks = _name_leaks(str(path.relative_to(root)).encode())
        if path.is_file():
            data = path.read_bytes()
            leaks += _name_leaks(data)
            if path.name.endswith(".gz"):
                leaks += _name_leaks(gzip.decompress(data))
        if leaks:
            found[str(path.relative_to(root))] = sorted(set(leaks))
    return found


@pytest.mark.slow
def test_no_name_from_file_or_folder_names_in_outputs_caches_sidecars_or_reports(tmp_path, capsys):
    import pandas as pd

    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.sample import make_sample

    folder = tmp_path / "DOE^JANE"
    sample = make_sample()
    scan = save(sample.scan, folder / "DOE_JANE_19700101.nii.gz")
    mask = save(sample.mask, folder / "DOE_JANE_19700101_mask.nii.gz")
    dicom = folder / "DOE_JANE_19700101_CT"
    write_series(dicom, axial_positions(16, spacing=3.0), rows=24, cols=24, description="t1 axial")
    out = tmp_path / "out"
    printed = []

    def run(*args: str) -> None:
        assert main(list(args)) == 0
        captured = capsys.readouterr()
        printed.append(captured.out)

    explain = ["--model", "lesion-classifier", "--method", "saliency", "--json"]
    explain += ["--cache", str(out / "cache")]
    run("explain", str(scan), *explain, "--out", str(out / "explain"))
    run("explain", str(scan), *explain, "--out", str(out / "explain_again"))  # a cache hit
    run("explain", str(dicom), *explain, "--out", str(out / "explain_dicom"))
    the_map = json.loads(printed[0])["map"]
    run("evaluate", the_map, "--roi", str(mask), "--scan", str(scan), "--json")
    run("convert", str(dicom), str(out / "converted"))
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"scan,roi\n{scan},{mask}\n{dicom},\n")
    batch = ["batch", str(manifest), "--model", "lesion-classifier", "--method", "saliency", "--workers", "0"]
    run(*batch, "--out", str(out / "batch"), "--dicom")
    run(*batch, "--out", str(out / "batch_anonymised"), "--anonymise")
    run("report", str(out / "batch"), "--out", str(out / "report.html"))
    run("report", str(out / "batch_anonymised"), "--out", str(out / "report_anonymised.html"))
    assert any((out / "batch").rglob("parametric_map.dcm")) and any((out / "cache").rglob("meta.json"))

    # the summary's input column is the one place a path stays; --anonymise drops it
    leaks = _name_tree(out)
    assert set(leaks) == {"batch/summary.csv", "batch/summary.parquet"}, leaks
    summary = pd.read_csv(out / "batch" / "summary.csv")
    assert set(summary["input"]) == {str(scan), str(dicom)}
    anonymised = pd.read_csv(out / "batch_anonymised" / "summary.csv")
    assert "input" not in anonymised.columns and len(anonymised) == 2
    assert list(anonymised["case"]) == list(summary["case"])
    # the explain outputs are named by pseudonym (NIfTI) and by series (DICOM)
    names = sorted(p.name for p in (out / "explain").iterdir())
    assert all(n.startswith("case-") for n in names) and len(names) == 2
    assert sorted(p.name for p in (out / "converted").iterdir()) == ["1_t1_axial.nii.gz"]
    for text in printed[:4]:  # explain and evaluate print output paths and figures only
        assert _name_leaks(text.encode()) == []
