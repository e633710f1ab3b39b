"""Mutated DICOM and NIfTI inputs for the loader, and a runner that survives crashes and hangs.

    python fuzz/mutate.py --n 5000 [--seed 0] [--out docs/reliability_fuzz.json]

Seeds: a real DICOM slice from ../shared/data (when present), a generated DICOM series,
a NIfTI file written by the plugin. Each input is a copy of a seed with random byte flips,
insertions, deletions, truncation, or a header field set to an odd value (NIfTI dims,
pixdim, datatype, vox_offset, sform; DICOM Rows, Columns, BitsAllocated, PixelSpacing,
positions, orientation, frames, transfer syntax). The loader must return volumes or raise
the project's own ``LoadError`` naming the file; anything else is a finding. Inputs run in
a child process, many per child, each under a time limit: a hang or a crash of the
interpreter kills only the child, which is recorded and replaced.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIME_LIMIT_S = 20.0


def make_seeds(work: Path) -> list[tuple[str, Path]]:
    """(kind, path) seeds: a NIfTI file, a generated DICOM series, a real DICOM slice."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from dicom_factory import axial_positions, write_series

    from napari_mlmi_interp.io import save
    from napari_mlmi_interp.io.volume import Geometry, Volume

    seeds = []
    nifti = work / "seed.nii"
    save(
        Volume(
            np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), Geometry((4, 5, 6), (3, 1, 0.5), (1, 2, 3))
        ),
        nifti,
    )
    seeds.append(("nifti", nifti))
    series = work / "series"
    write_series(series, axial_positions(4, spacing=2.0), rows=6, cols=7)
    seeds.append(("dicom-series", series))
    shared = ROOT.parent / "shared" / "data" / "dicom" / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    if shared.is_dir():
        real = sorted(p for p in shared.rglob("*") if p.is_file())[0]
        seeds.append(("dicom-real", real))
    return seeds


def _nifti_field(data: bytearray, rng: random.Random) -> None:
    """Set one NIfTI-1 header field to an odd value."""
    fields = [
        (40, "h", 8),
        (42, "h", 7),
        (70, "h", 1),
        (72, "h", 1),
        (76, "f", 8),
        (108, "f", 1),
        (252, "h", 2),
        (254, "h", 2),
        (280, "f", 12),
    ]
    offset, fmt, count = rng.choice(fields)
    size = struct.calcsize(fmt)
    k = rng.randrange(count)
    odd = rng.choice(
        [0, -1, 1, 2, 3, 7, 255, 256, 32767, -32768, 2**31 - 1, float("nan"), float("inf"), 1e30, -0.0]
    )
    try:
        packed = struct.pack("<" + fmt, int(odd) if fmt == "h" and odd == odd and abs(odd) < 1e9 else odd)
    except (struct.error, ValueError, OverflowError):
        packed = bytes(rng.randrange(256) for _ in range(size))
    pos = offset + k * size
    data[pos : pos + size] = packed


def _dicom_field(path: Path, rng: random.Random) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    choice = rng.choice(
        [
            "Rows",
            "Columns",
            "BitsAllocated",
            "PixelSpacing",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "NumberOfFrames",
            "SamplesPerPixel",
            "PixelRepresentation",
            "RescaleSlope",
            "TransferSyntax",
            "PixelData",
        ]
    )
    odd = rng.choice([0, 1, 65535, -1, "nan", "1e308", "", "abc"])
    try:
        if choice == "TransferSyntax":
            ds.file_meta.TransferSyntaxUID = rng.choice(
                ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.3.4"]
            )
        elif choice == "PixelData":
            ds.PixelData = ds.PixelData[: rng.randrange(len(ds.PixelData) + 1)]
        elif choice in ("PixelSpacing",):
            ds.PixelSpacing = [str(odd), str(rng.choice([0, 1, -1]))]
        elif choice in ("ImagePositionPatient", "ImageOrientationPatient"):
            n = 3 if choice == "ImagePositionPatient" else 6
            ds.data_element(choice).value = [
                str(rng.choice([0, 1, -1, "nan", "1e308", odd])) for _ in range(n)
            ]
        else:
            setattr(ds, choice, odd if not isinstance(odd, str) or choice == "RescaleSlope" else 0)
    except Exception:
        pass
    import io

    buf = io.BytesIO()
    try:
        ds.save_as(buf)
    except Exception:
        return path.read_bytes()
    return buf.getvalue()


def mutate(data: bytes, rng: random.Random, kind: str, path: Path) -> bytes:
    """One random mutation of ``data`` (a seed file's bytes)."""
    op = rng.choice(["flip", "flip", "insert", "delete", "truncate", "field", "field"])
    out = bytearray(data)
    if op == "field":
        if kind == "nifti" and len(out) >= 348:
            _nifti_field(out, rng)
            return bytes(out)
        if kind.startswith("dicom"):
            return _dicom_field(path, rng)
    if op == "flip":
        for _ in range(rng.randint(1, 16)):
            pos = rng.randrange(len(out))
            out[pos] = rng.randrange(256)
    elif op == "insert":
        pos = rng.randrange(len(out) + 1)
        out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif op == "delete" and len(out) > 1:
        pos = rng.randrange(len(out))
        del out[pos : pos + rng.randint(1, 64)]
    else:
        out = out[: rng.randrange(len(out) + 1)]
    return bytes(out)


def _child(jobs: mp.Queue, results: mp.Queue) -> None:
    os.environ.setdefault("MLMI_FUZZ", "1")
    import warnings

    warnings.simplefilter("ignore")
    from napari_mlmi_interp.io import LoadError, load

    while True:
        job = jobs.get()
        if job is None:
            return
        index, path = job
        results.put(("start", index))
        try:
            volumes = load(path)
            outcome, detail = "volume", f"{len(volumes)} volume(s)"
        except LoadError as exc:
            named = Path(path).name in str(exc) or str(Path(path).parent) in str(exc)
            outcome, detail = ("refused" if named else "refused-unnamed"), str(exc)[:200]
        except Exception as exc:  # a finding: not the project's own error
            outcome, detail = "other-exception", f"{type(exc).__name__}: {str(exc)[:200]}"
        results.put(("done", index, outcome, detail))


def run(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="mlmi-fuzz-"))
    seeds = make_seeds(work)
    inputs = []
    for i in range(n):
        kind, src = seeds[i % len(seeds)]
        target = work / f"case{i:05d}"
        if src.is_dir():  # a series: mutate one of its files
            shutil.copytree(src, target)
            files = sorted(target.iterdir())
            victim = rng.choice(files)
            victim.write_bytes(mutate(victim.read_bytes(), rng, kind, victim))
            inputs.append((kind, str(target)))
        else:
            target.mkdir()
            path = target / src.name
            path.write_bytes(mutate(src.read_bytes(), rng, kind, src))
            inputs.append((kind, str(path)))
    ctx = mp.get_context("spawn")
    outcomes: dict[str, int] = {}
    findings = []
    started = time.monotonic()
    slowest = 0.0
    child = jobs = results = None

    def fresh_child():
        # one job in flight at a time: a dead child never leaves a full pipe behind
        q_jobs, q_results = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_child, args=(q_jobs, q_results), daemon=True)
        proc.start()
        return proc, q_jobs, q_results

    def discard(proc, *queues) -> None:
        if proc is not None and proc.is_alive():
            proc.kill()
        for q in queues:
            if q is not None:
                q.cancel_join_thread()
                q.close()

    for index, (seed_kind, path) in enumerate(inputs):
        if child is None or not child.is_alive():
            discard(child, jobs, results)
            child, jobs, results = fresh_child()
        t0 = time.monotonic()
        jobs.put((index, path))
        outcome = detail = None
        while outcome is None:
            try:
                msg = results.get(timeout=0.5)
            except queue.Empty:
                if not child.is_alive():
                    outcome, detail = "crash", f"exit code {child.exitcode}"
                elif time.monotonic() - t0 > TIME_LIMIT_S:
                    outcome, detail = "hang", f"no answer in {TIME_LIMIT_S:.0f} s"
                    discard(child, jobs, results)
                    child = None
                continue
            if msg[0] == "done":
                _, _index, outcome, detail = msg
        slowest = max(slowest, time.monotonic() - t0)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome not in ("volume", "refused"):
            findings.append({"input": path, "seed": seed_kind, "outcome": outcome, "detail": detail})
    if child is not None:
        jobs.put(None)
        child.join(timeout=10)
    discard(child, jobs, results)
    return {
        "inputs": n,
        "seed": seed,
        "seeds": [k for k, _ in seeds],
        "outcomes": outcomes,
        "findings": findings[:50],
        "seconds": round(time.monotonic() - started, 1),
        "slowest_input_s": round(slowest, 2),
        "time_limit_s": TIME_LIMIT_S,
        "work": str(work),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.n, args.seed)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    bad = sum(v for k, v in result["outcomes"].items() if k not in ("volume", "refused"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
