"""Opening a series over DICOMweb against opening it from its folder (a real Orthanc on loopback).

    python benchmarks/pacs.py [--repeats 5] [--out docs/benchmarks_pacs.json]

Starts Orthanc with its DICOMweb plugin (``tests/orthanc.py``: Debian's ``orthanc`` and
``orthanc-dicomweb``, a config in a temporary folder, a free loopback port), uploads the real
Siemens PD/T2 series of ``shared/data`` (70 files, two echoes of 35 slices, 64x64) and times
``io.load``:

- from its folder on disk;
- over DICOMweb with an empty cache (QIDO-RS for the instances + one streamed WADO-RS);
- over DICOMweb with the series cached (QIDO-RS only, then the same folder read).

Each is the median of ``repeats`` runs (the cold one empties the cache before each run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.orthanc import PASSWORD, USER, Orthanc, available  # noqa: E402

PDT2 = Path("dicom/dcm_qa_pdt2/In/Siemens/VE11")


def _median_s(fn, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--data", default=os.environ.get("MLMI_SHARED_DATA") or str(ROOT.parent / "shared" / "data")
    )
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    why = available()
    if why:
        print(why, file=sys.stderr)
        return 2
    from napari_mlmi_interp.io import load
    from napari_mlmi_interp.io.dicomweb import search

    folder = Path(args.data) / PDT2
    files = sorted(p for p in folder.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        os.environ.update(
            MLMI_DICOMWEB_CACHE=str(cache), MLMI_DICOMWEB_USER=USER, MLMI_DICOMWEB_PASSWORD=PASSWORD
        )
        server = Orthanc(Path(tmp) / "orthanc").start()
        try:
            server.upload(files)
            (study,) = search(server.dicomweb)
            url = study["series"][0]["url"]
            load(folder), load(url)  # warm-up: imports, the OS file cache, Orthanc's caches
            disk = _median_s(lambda: load(folder), args.repeats)
            cold = _median_s(
                lambda: load(url), args.repeats, before=lambda: shutil.rmtree(cache, ignore_errors=True)
            )
            warm = _median_s(lambda: load(url), args.repeats)
        finally:
            server.stop()
    result = {
        "series": "Siemens PD/T2, 70 files (2 echoes x 35 slices, 64x64)",
        "repeats": args.repeats,
        "disk_s": round(disk, 3),
        "dicomweb_cold_s": round(cold, 3),
        "dicomweb_cached_s": round(warm, 3),
        "cold_over_disk": round(cold / disk, 2),
        "cached_over_disk": round(warm / disk, 2),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
