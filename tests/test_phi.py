"""No patient identity anywhere the plugin writes: a DICOM carrying a name, an ID and a birth
date goes through info, explain (with the cache), evaluate, a batch, its report and the CLI;
none of the three appears in any file written, any file or folder name, or any output."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from napari_mlmi_interp.cli import main

from .dicom_factory import PHI, axial_positions, write_series

pytest.importorskip("torch")

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
