"""Batch explanations over a cohort on Dask distributed: per-case maps, metrics, a summary.

Every case runs :func:`run_case` on a worker: load the scan (and its ROI), explain it with
each method, write the native-grid map as NIfTI in the case's own geometry, score it
(:func:`~napari_mlmi_interp.framework.map_evidence`, against the ROI when there is one; for a
segmenter without one, against the ROI it explained, and said so; with ``evidence``, also
:func:`~napari_mlmi_interp.framework.model_evidence`) and write a JSON sidecar (tool and
library versions, model hash, method, parameters, target, prediction, timings, figures).
``case.json`` is written last, atomically: a case is done when it exists, so a rerun skips
finished cases and an interrupted one leaves no half-done case behind. A case that fails
records its error (``error.json``) and the others go on; a rerun tries it again.

No input path or file name (which may hold a patient's name) is written into a case's files:
cases are named by a keyed hash of their input, records carry the case's pseudonym, and
error messages say ``<input>`` where the path was. The summary's ``input`` column is the one
place the paths stay (the user's own index of the cases); ``anonymise`` drops it too.

Workers are processes with one thread each (``threads_per_worker=1`` and one torch / ITK
thread): N workers use N cores. ``workers=0`` runs in this process (for debugging).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..framework.evidence import LOCALIZATION_FIGURES
from ..framework.evidence.effort import EFFORTS
from ..framework.evidence.from_model import MODEL_FIGURES
from ..framework.settings import DEFAULT_TOLERANCE_MM, DEFAULT_TOPK_PERCENT
from ..io.dicomweb.url import parse_url
from .manifest import Case, read_cases
from .to_dicom import SOURCE_SERVER, ExportRequest, StoreFailed, export_to_dicom

__all__ = ["BatchResult", "case_inputs", "run_batch", "run_case"]

SUMMARY_FIGURES = (*LOCALIZATION_FIGURES, "components_90", "gini", "entropy", "region_volume_ml")

#: ``evidence``: the model figures' effort (curve steps, randomisation stages, perturbations,
#: copies), the same efforts as the sidebar's and ``explain --evidence``.
EVIDENCE_EFFORT = EFFORTS

_MODELS: dict[str, Any] = {}  # per worker process: each model is loaded once


def _model(ref: str) -> Any:
    from ..models import resolve_model

    if ref not in _MODELS:
        _MODELS[ref] = resolve_model(ref)
    return _MODELS[ref]


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(int(threads))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _for_disk(data: dict[str, Any], case: Case) -> dict[str, Any]:
    """``data`` as written into the case's folder: no ``input``, the case's paths replaced.

    A path (or a longer path under it, in an error message) becomes ``<input>`` or ``<roi>``.
    """
    text = json.dumps({k: v for k, v in data.items() if k != "input"}, default=str)
    for path, placeholder in ((case.scan, "<input>"), (case.roi, "<roi>")):
        if path is not None:
            text = text.replace(json.dumps(str(path))[1:-1], placeholder)
    return json.loads(text)


def case_dir(out: str | os.PathLike[str], case: Case) -> Path:
    return Path(out) / "cases" / case.key


def run_case(
    case: Case,
    *,
    model: str,
    methods: list[str],
    out: str,
    target: str | int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    percent: float = DEFAULT_TOPK_PERCENT,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    threads: int | None = None,
    dicom: bool = False,
    keep_identity: bool = False,
    evidence: str | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Explain one case with every method; returns its record (also written as ``case.json``).

    With ``evidence`` (``'full'``, ``'quick'`` or ``'brief'``, :data:`EVIDENCE_EFFORT`) the model figures
    are computed too (deletion/insertion, randomisation, infidelity, score drop, augmentation
    spread; for a segmenter on its ROI score): the model runs tens of times per method.

    With ``dicom`` and a DICOM source, each map is also written into the source study
    (:func:`~napari_mlmi_interp.export.export_dicom`: derived series, Parametric Map, SEG of
    the top-k % region) under ``dicom/<method>/``. With ``store`` (``"source"``: the DICOMweb
    server the scan was read from, or a DICOMweb URL) those objects are also sent into the
    source study (STOW-RS, :func:`~napari_mlmi_interp.export.store_export`); the case is done
    only when every object is stored (else it fails with what was and was not stored).
    """
    from ..explain import explain

    _set_threads(threads)
    folder = case_dir(out, case)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # "input" stays in memory (the caller's own index); _for_disk keeps it out of the files
    record: dict[str, Any] = {"case": case.key, "input": case.input, "label": case.label, "methods": {}}
    try:
        volume, roi = _load_case(case, record)
        loaded = _model(model)
        model_input = None
        sources: dict[str, Any] = {}  # the DICOM source headers, read once for every method
        for method in methods:
            result = explain(
                volume,
                loaded,
                method,
                target=target,
                params=(params or {}).get(method),
                model_input=model_input,
            )
            model_input = result.prediction.model_input
            map_path = _write_map(result, folder, method)
            scoring = _Scoring(percent, tolerance_mm, evidence, record.setdefault("notes", []))
            evidence_ = _score(result, roi, volume, scoring, loaded)
            sidecar = _sidecar(result, evidence_, map_path)
            if (dicom or store) and volume.references.get("SOPInstanceUIDs"):
                export = ExportRequest(folder / "dicom" / method, method, percent, keep_identity, store)
                sidecar["dicom"] = export_to_dicom(result, volume, export, sources, record)
            elif store:  # asked to store: a case with nothing to store is not done
                raise StoreFailed("not stored: the scan is not a DICOM series (nothing to send to a PACS)")
            _write_json(folder / f"{method}.json", _for_disk(sidecar, case))
            record["methods"][method] = _method_record(result, map_path, sidecar, evidence_)
            if store:
                record["methods"][method]["stored"] = sidecar["dicom"]["store"]["status"]
        record.update(status="ok", seconds=round(time.perf_counter() - started, 3), worker_pid=os.getpid())
        (folder / "error.json").unlink(missing_ok=True)
        _write_json(folder / "case.json", _for_disk(record, case))
    except Exception as exc:  # one case's failure is recorded; the batch goes on
        record.update(
            status="error",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=6),
            seconds=round(time.perf_counter() - started, 3),
        )
        _write_json(folder / "error.json", _for_disk(record, case))
    return record


def _load_case(case: Case, record: dict[str, Any]) -> tuple[Any, Any]:
    """The case's scan (the first volume of its source) and its ROI on the scan's grid (or None).

    The record gets the case's pseudonym, the load's warnings and notes.
    """
    from ..framework.files import on_grid_of
    from ..io import binary_mask, load, load_warnings

    volumes = load(case.scan)
    volume = volumes[0]
    record["case_id"] = volume.case_id
    record["warnings"] = load_warnings(volumes)
    record["notes"] = [f"{len(volumes)} volumes found; the first was explained"] if len(volumes) > 1 else []
    roi = None
    if case.roi is not None:
        notes: list[str] = []
        (given,) = load(case.roi)[:1]
        given = given.with_array(binary_mask(given, what="ROI", path=case.roi).astype("uint8"))
        roi = on_grid_of(given, volume, labels=True, what="ROI", notes=notes) > 0
        record["notes"] += notes
    return volume, roi


def _write_map(result: Any, folder: Path, method: str) -> Path:
    """The native-grid map as ``<method>.nii.gz`` in the case's geometry (written atomically)."""
    from ..io import save

    map_path = folder / f"{method}.nii.gz"
    tmp = folder / f".{method}.{os.getpid()}.nii.gz"
    save(result.native, tmp)
    os.replace(tmp, map_path)
    return map_path


@dataclass(frozen=True)
class _Scoring:
    """How a case's maps are scored: the figure settings, the model figures' effort, the notes."""

    percent: float
    tolerance_mm: float
    evidence: str | None
    notes: list[str]


def _score(result: Any, roi: Any, volume: Any, scoring: _Scoring, model: Any) -> Any:
    """The map's evidence (against the ROI when there is one), and the model's with ``evidence``.

    A segmenter's map without a case ROI is scored against the ROI it explained (class T
    inside M: the model's own segmentation of T, or the mask given), and the record says so.
    """
    from ..framework import map_evidence, model_evidence
    from ..framework.evidence.from_map import against_explained_roi

    explained = getattr(result, "roi", None)
    if roi is None and explained is not None:
        roi = explained
        note = f"{result.method}: localization against the explained ROI ({result.target.get('roi')})"
        if note not in scoring.notes:
            scoring.notes.append(note)
    figures = map_evidence(
        result.native, roi=roi, scan=volume, percent=scoring.percent, tolerance_mm=scoring.tolerance_mm
    )
    figures = against_explained_roi(figures, roi, explained)
    if scoring.evidence is None:
        return figures
    name = _checked_effort(scoring.evidence)
    evidence = model_evidence(result, model, percent=scoring.percent, **EVIDENCE_EFFORT[name])
    evidence.settings["effort"] = name  # the cards and the report can say a curve is coarser
    return figures.merged(evidence)


def _sidecar(result: Any, evidence: Any, map_path: Path) -> dict[str, Any]:
    """The JSON beside a map: tool, the explanation's summary, the map's file name, its figures."""
    from .. import __version__

    sidecar = {
        "tool": {"name": "napari-mlmi-interp", "version": __version__},
        **result.summary(),
        "map": map_path.name,
        "metrics": evidence.to_dict(),
    }
    sidecar["metrics"].pop("curves", None)
    return sidecar


def _method_record(result: Any, map_path: Path, sidecar: dict[str, Any], evidence: Any) -> dict[str, Any]:
    """What the case's record (and the summary) keeps of one method's run."""
    return {
        "map": str(map_path),
        "prediction": result.prediction.to_dict(),
        "peak_lps_mm": sidecar["peak_lps_mm"],
        "seconds": round(result.timings.get("total", 0.0), 4),
        "figures": {k: evidence[k].to_dict()["value"] for k in _summary_keys(evidence)},
        "bands": {k: evidence[k].band for k in _summary_keys(evidence)},
    }


def _checked_effort(evidence: str) -> str:
    if evidence not in EVIDENCE_EFFORT:
        raise InputError(f"evidence must be one of {', '.join(EVIDENCE_EFFORT)}, got {evidence!r}")
    return evidence


def _summary_keys(evidence: Any) -> list[str]:
    """The figures a summary row keeps: the map's, and the model's when they were computed."""
    return [k for k in (*SUMMARY_FIGURES, *MODEL_FIGURES) if k in evidence]


def _done(out: Path, case: Case) -> dict[str, Any] | None:
    path = case_dir(out, case) / "case.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") != "ok":
        return None
    record["input"] = case.input  # in memory only, as for a case run now
    return record


@dataclass
class BatchResult:
    """What a batch did: every case's record, which were skipped, the summary files."""

    records: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    summary_csv: Path | None = None
    summary_parquet: Path | None = None
    seconds: float = 0.0
    workers: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def run_batch(
    source: str | os.PathLike[str],
    *,
    model: str,
    methods: list[str],
    out: str | os.PathLike[str],
    masks: str | os.PathLike[str] | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    target: str | int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    percent: float = DEFAULT_TOPK_PERCENT,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    threads: int | None = None,
    dicom: bool = False,
    keep_identity: bool = False,
    anonymise: bool = False,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    evidence: str | None = None,
    store: str | None = None,
) -> BatchResult:
    """Explain every case of ``source`` with ``model`` and each of ``methods``.

    Parameters
    ----------
    source : path-like
        A folder of scans or a CSV manifest (see :func:`~.manifest.read_cases`).
    model : str
        A model name, spec file or weights file (loaded once per worker).
    workers : int
        Local Dask workers (processes, one thread each); 0 runs in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); its workers are used.
    dicom : bool
        Also write each map of a DICOM case into its source study (see :func:`run_case`),
        with the patient pseudonymised unless ``keep_identity``.
    store : str, optional
        Send each DICOM case's objects back into its study (implies ``dicom``): ``"source"``
        for the DICOMweb server the case was read from, or a DICOMweb root URL.
    evidence : {'full', 'quick', 'brief'}, optional
        Also compute the model figures of every map (see :func:`run_case`): minutes per map.
    anonymise : bool
        Leave the ``input`` column (the scans' paths) out of the summary as well: then no
        file the batch writes holds a path or a file name of its inputs. The report then
        draws the maps without the scan beneath them.
    threads : int, optional
        Torch and ITK threads per local worker (default: the machine's cores shared out
        among the workers).
    progress : callable, optional
        ``progress(done, total, record)`` after every case (skipped ones count as done).
    """
    started = time.perf_counter()
    _check_model_and_methods(model, methods)
    store = _checked_store(store)
    out_dir = Path(out)
    (out_dir / "cases").mkdir(parents=True, exist_ok=True)
    cases = read_cases(source, masks=masks)
    records, skipped = _finished_before(out_dir, cases, methods, stored=store is not None)
    pending = [c for c in cases if c.key not in records]
    counter = _Progress(len(cases), progress, records)
    for key in skipped:  # done before: counted first
        counter.done(records[key])
    kwargs = {
        **dict(model=model, methods=list(methods), out=str(out_dir), target=target, params=params or {}),
        **dict(percent=percent, tolerance_mm=tolerance_mm, dicom=dicom or store is not None),
        "keep_identity": keep_identity,
        **({"store": store} if store else {}),
        **({"evidence": _checked_effort(evidence)} if evidence is not None else {}),
    }
    _write_config(out_dir, cases, kwargs)
    if pending and (workers > 0 or scheduler):
        n_workers = _run_on_dask(pending, workers, scheduler, threads, kwargs, counter.done)
    else:  # in this process, one case after the other
        n_workers = 0
        for case in pending:
            counter.done(run_case(case, threads=threads, **kwargs))
    ordered = [records[c.key] for c in cases]
    result = BatchResult(ordered, skipped, seconds=time.perf_counter() - started, workers=n_workers)
    result.summary_csv, result.summary_parquet = write_summary(ordered, methods, out_dir, anonymise=anonymise)
    return result


def _checked_store(store: str | None) -> str | None:
    """``store`` as given (None or ``"source"``), or its DICOMweb URL parsed: a wrong URL fails here, once."""
    return store if store in (None, SOURCE_SERVER) else str(parse_url(str(store)))


def _check_model_and_methods(model: str, methods: list[str]) -> None:
    """Unknown method names and a wrong model fail here, not on every worker."""
    from ..explain import get_method
    from ..models import resolve_model

    for m in methods:
        get_method(m)
    resolve_model(model)


def _write_config(out_dir: Path, cases: list[Case], kwargs: dict[str, Any]) -> None:
    """``batch.json``: the model, methods, target, parameters and settings, and the cases' order."""
    keys = ("model", "methods", "target", "params", "percent", "tolerance_mm", "dicom", "store")
    config = {**{k: kwargs.get(k) for k in keys}, "cases": len(cases), "order": [c.key for c in cases]}
    _write_json(out_dir / "batch.json", config)


def _finished_before(
    out_dir: Path, cases: list[Case], methods: list[str], *, stored: bool = False
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The records of cases a previous run finished with every method (and, with ``stored``,
    whose every method's objects that run stored in a PACS), and their keys."""
    records: dict[str, dict[str, Any]] = {}
    skipped = []
    for case in cases:
        done = _done(out_dir, case)
        ran = done.get("methods", {}) if done is not None else {}
        if done is not None and all(
            m in ran and (not stored or ran[m].get("stored") == "stored") for m in methods
        ):
            records[case.key] = done
            skipped.append(case.key)
    return records, skipped


class _Progress:
    """Collects finished cases' records and reports ``progress(done, total, record)`` after each."""

    def __init__(
        self,
        total: int,
        progress: Callable[[int, int, dict[str, Any]], None] | None,
        records: dict[str, dict[str, Any]],
    ) -> None:
        self.total, self.finished, self.progress, self.records = total, 0, progress, records

    def done(self, record: dict[str, Any]) -> None:
        self.records[record["case"]] = record
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.total, record)


def _run_on_dask(
    pending: list[Case],
    workers: int,
    scheduler: str | None,
    threads: int | None,
    kwargs: dict[str, Any],
    finished: Callable[[dict[str, Any]], None],
) -> int:
    """Run ``pending`` on a scheduler's workers or a local cluster; returns the number of workers.

    A local cluster has ``workers`` processes with one thread each; each gets ``threads``
    torch / ITK threads (default: the machine's cores shared out among the workers).
    """
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        client = Client(cluster)
        threads = threads or max(1, (os.cpu_count() or 1) // int(workers))
    try:
        n_workers = len(client.scheduler_info()["workers"])
        futures = client.map(run_case, pending, pure=False, threads=threads, **kwargs)
        for future in as_completed(futures):
            finished(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return n_workers


def summary_rows(
    records: list[dict[str, Any]], methods: list[str], *, anonymise: bool = False
) -> list[dict[str, Any]]:
    """One row per case and method (one row with the error for a failed case).

    The ``input`` column (each scan's path, the user's own index of the cases) is the one
    place a batch writes paths; with ``anonymise`` it is left out, and a failed case's error
    says ``<input>`` where its path was.
    """
    rows = []
    for r in records:
        base = {"case": r["case"], "case_id": r.get("case_id", "")}
        if not anonymise:
            base["input"] = r.get("input", "")
        base.update(label=r.get("label"), status=r.get("status"))
        if r.get("status") != "ok":
            error = r.get("error", "")
            if anonymise and r.get("input"):
                error = error.replace(str(r["input"]), "<input>")
            rows.append({**base, "error": error})
            continue
        for method in methods:
            m = r["methods"].get(method)
            if m is None:
                continue
            pred = m["prediction"]
            peak = m["peak_lps_mm"]
            row = {
                **base,
                "error": "",
                "method": method,
                "predicted": pred.get("predicted"),
                "peak_L_mm": peak[0],
                "peak_P_mm": peak[1],
                "peak_S_mm": peak[2],
                "seconds": m["seconds"],
            }
            for cls, p in pred.get("probabilities", {}).items():
                row[f"p[{cls}]"] = p
            for key in (*SUMMARY_FIGURES, *(k for k in MODEL_FIGURES if k in m["figures"])):
                value = m["figures"].get(key)
                row[key] = value if not isinstance(value, list) else json.dumps(value)
            row["map"] = m["map"]
            rows.append(row)
    return rows


def write_summary(
    records: list[dict[str, Any]], methods: list[str], out: Path, *, anonymise: bool = False
) -> tuple[Path, Path | None]:
    """``summary.csv`` (and ``summary.parquet`` when pyarrow is installed)."""
    import pandas as pd

    frame = pd.DataFrame(summary_rows(records, methods, anonymise=anonymise))
    csv_path = out / "summary.csv"
    frame.to_csv(csv_path, index=False)
    try:
        parquet = out / "summary.parquet"
        frame.to_parquet(parquet, index=False)
    except ImportError:
        parquet = None
    return csv_path, parquet


def case_inputs(result_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``{case key: input path}`` from a batch's summary (empty for an anonymised batch).

    The case files hold no paths; the summary's ``input`` column is where they are kept.
    """
    import csv

    path = Path(result_dir) / "summary.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["case"]: row["input"] for row in csv.DictReader(fh) if row.get("input")}
