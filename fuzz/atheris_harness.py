"""Coverage-guided fuzzing of the loaders with atheris (libFuzzer), on demand.

    pip install atheris
    python fuzz/atheris_harness.py -atheris_runs=20000 [-max_len=4096] [corpus_dir]

Each input's first byte picks the format (NIfTI or DICOM), the rest is the file. The
property is the loader's contract: a Volume, or the project's ``LoadError``; any other
exception is reported by libFuzzer as a crash with the input saved. A hang shows as a
libFuzzer timeout (``-timeout=20``). The seed corpus is built from the same seeds as
``fuzz/mutate.py`` when no corpus folder is given.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fuzz"))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from napari_mlmi_interp.io import LoadError, load

WORK = Path(tempfile.mkdtemp(prefix="mlmi-atheris-"))
SUFFIXES = (".nii", ".dcm")


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    path = WORK / f"input{SUFFIXES[data[0] % 2]}"
    path.write_bytes(data[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(LoadError):
            load(path)


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus given: seed one
        from mutate import make_seeds

        corpus = WORK / "corpus"
        corpus.mkdir()
        for i, (kind, seed) in enumerate(make_seeds(WORK)):
            files = sorted(seed.iterdir()) if seed.is_dir() else [seed]
            prefix = b"\x00" if kind == "nifti" else b"\x01"
            (corpus / f"seed{i}").write_bytes(prefix + files[0].read_bytes())
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
