"""DICOMweb against a real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``): search, retrieve
into the UID-keyed cache, the same volumes as from the folder, clear errors, and STOW-RS back
into the source study (``batch --store``), retried and reported per object."""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from napari_mlmi_interp.io import LoadError, load

from .conftest import in_ci
from .orthanc import PASSWORD, USER, Orthanc, available

PDT2 = ("dcm_qa_pdt2", "In", "Siemens", "VE11")
JPEG2000 = ("dicom2nifti", "generic", "compressed_j2k", "001")
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _report(folder: Path, out: Path) -> Path:
    """A Basic Text SR in the study of the first file of ``folder``: a series with no image."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(_series_files(folder)[0], stop_before_pixels=True)
    ds = pydicom.Dataset()
    study = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber")
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", *study):
        setattr(ds, key, getattr(src, key, ""))
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, generate_uid()
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), "SR", 77, 1
    ds.SeriesDescription = "a report, no pixels"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.ContinuityOfContent = "SEPARATE"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        BASIC_TEXT_SR,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = out / "report.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def orthanc(shared_dicom, tmp_path_factory):
    """A real Orthanc on a free loopback port holding PD/T2, a JPEG 2000 series and a report."""
    why = available()
    if why:
        if in_ci():
            pytest.fail(f"{why}; CI must run the DICOMweb tests (scripts/test.sh installs it)", pytrace=False)
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(folder).start()
    try:
        server.upload(_series_files(shared_dicom.joinpath(*PDT2)))
        server.upload(_series_files(shared_dicom.joinpath(*JPEG2000)))
        server.upload([_report(shared_dicom.joinpath(*PDT2), folder)])
        yield server
    finally:
        server.stop()


@pytest.fixture
def pacs_env(monkeypatch, tmp_path):
    """The test server's credentials in the environment and a cache of this test's own."""
    monkeypatch.setenv("MLMI_DICOMWEB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLMI_DICOMWEB_USER", USER)
    monkeypatch.setenv("MLMI_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.delenv("MLMI_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("MLMI_DICOMWEB_CONFIG", str(tmp_path / "no-config.json"))
    return tmp_path / "cache"


def _study_of(orthanc, description: str) -> tuple[dict, dict]:
    from napari_mlmi_interp.io.dicomweb import search

    for study in search(orthanc.dicomweb):
        for series in study["series"]:
            if series["description"] == description:
                return study, series
    raise AssertionError(f"no series {description!r} on the server")


# -- search -------------------------------------------------------------------------------------------


def test_search_lists_the_uploaded_studies_and_series_without_identity(orthanc, pacs_env):
    from napari_mlmi_interp.io.dicomweb import search

    studies = search(orthanc.dicomweb)
    series = {s["description"]: s for st in studies for s in st["series"]}
    pdt2 = series["pd+t2_tse_sag_ISO_1.8mm"]
    assert pdt2["instances"] == 70 and pdt2["modality"] == "MR" and pdt2["number"] == 3
    assert series["a report, no pixels"]["modality"] == "SR"
    assert pdt2["url"].startswith(orthanc.dicomweb + "/studies/") and "/series/" in pdt2["url"]
    assert len(studies) == 2
    assert all("PatientName" not in st and "PatientID" not in st for st in studies)
    shown = search(orthanc.dicomweb, show_identity=True)
    assert all("PatientID" in st for st in shown)
    # filters: modality (a study's other series are left out), study date, patient id
    mr = search(orthanc.dicomweb, modality="sr")
    assert [s["modality"] for st in mr for s in st["series"]] == ["SR"]
    pdt2_study, _ = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    by_date = search(orthanc.dicomweb, study_date=f"{pdt2_study['date']}-")
    assert pdt2_study["study_uid"] in {st["study_uid"] for st in by_date}
    assert search(orthanc.dicomweb, study_date="19000101-19000102") == []
    pid = next(st["PatientID"] for st in shown if st["study_uid"] == pdt2_study["study_uid"])
    assert [st["study_uid"] for st in search(orthanc.dicomweb, patient_id=pid)] == [pdt2_study["study_uid"]]


def test_pacs_search_command_prints_urls_and_hides_identity(orthanc, pacs_env, capsys):
    from napari_mlmi_interp.cli import main

    assert main(["pacs", "search", orthanc.dicomweb, "--json"]) == 0
    printed = capsys.readouterr().out
    studies = json.loads(printed)["studies"]
    assert {s["instances"] for st in studies for s in st["series"]} >= {70, 1}
    assert "PatientName" not in printed
    assert main(["pacs", "search", orthanc.dicomweb]) == 0
    text = capsys.readouterr().out
    assert "pd+t2_tse_sag_ISO_1.8mm" in text and "70 instances" in text and "/series/" in text


# -- retrieve -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("description", "parts"), [("pd+t2_tse_sag_ISO_1.8mm", PDT2), (None, JPEG2000)])
def test_a_series_over_dicomweb_is_the_series_from_its_folder(
    orthanc, pacs_env, shared_dicom, description, parts
):
    import pydicom

    folder = shared_dicom.joinpath(*parts)
    uid = str(pydicom.dcmread(_series_files(folder)[0], stop_before_pixels=True).SeriesInstanceUID)
    from napari_mlmi_interp.io.dicomweb import search

    study = next(st for st in search(orthanc.dicomweb) if any(s["series_uid"] == uid for s in st["series"]))
    url = f"{study['url']}/series/{uid}"
    remote, local = load(url), load(folder)
    assert len(remote) == len(local) >= 1
    for r, v in zip(remote, local):
        assert r.name == v.name
        assert r.array.dtype == v.array.dtype and np.array_equal(r.array, v.array)
        np.testing.assert_allclose(r.geometry.index_to_lps, v.geometry.index_to_lps, atol=1e-9)
        assert r.metadata["dicomweb"] == url
        assert r.references["SeriesInstanceUID"] == uid
        assert r.case_id == v.case_id  # the same pseudonym: from the UIDs, not the place
    if description:  # the PD/T2 series is split by echo, as from its folder
        assert [r.metadata.get("EchoNumber") for r in remote] == [1, 2]


def test_the_cache_is_keyed_by_uids_bounded_and_reused(orthanc, pacs_env, monkeypatch):
    from napari_mlmi_interp.io.dicomweb import cache, search

    studies = search(orthanc.dicomweb, show_identity=True)
    pdt2 = next(s for st in studies for s in st["series"] if s["instances"] == 70)
    j2k = next(s for st in studies for s in st["series"] if s["modality"] == "MR" and s["instances"] != 70)
    load(pdt2["url"])
    files = sorted(p for p in pacs_env.rglob("*") if p.is_file())
    assert len([p for p in files if p.suffix == ".dcm"]) == 70
    names = {str(st.get("PatientName") or "") for st in studies} | {str(st["PatientID"]) for st in studies}
    names = {n for n in names if n}
    paths = "\n".join(str(p.relative_to(pacs_env)) for p in files)
    assert names and not any(n in paths or n.replace("^", " ") in paths for n in names)
    assert orthanc.rest.split("//")[1].split(":")[0] not in paths  # no host name either
    # reused: a second load retrieves nothing (every file untouched)
    before = {p: p.stat().st_mtime_ns for p in files if p.suffix == ".dcm"}
    load(pdt2["url"])
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # bounded: with room for one series, reading another evicts the one used longest ago
    monkeypatch.setenv("MLMI_DICOMWEB_CACHE_MB", "0.2")
    load(j2k["url"])
    left = {p.parent.name for p in pacs_env.rglob("*.dcm")}
    assert left == {j2k["series_uid"]}
    assert cache.cache_root() == pacs_env


def test_a_study_url_reads_every_image_series_and_skips_the_report(orthanc, pacs_env):
    study, _ = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    with pytest.warns(UserWarning, match="series .*skipped"):
        volumes = load(study["url"])
    assert len(volumes) == 2 and all(v.modality == "MR" for v in volumes)


def test_cancel_stops_between_instances_and_leaves_no_partial_file(orthanc, pacs_env):
    from napari_mlmi_interp.errors import Cancelled
    from napari_mlmi_interp.explain import CancelToken
    from napari_mlmi_interp.io.dicomweb import load_url

    _, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    token, seen = CancelToken(), []

    def progress(done, total):
        seen.append((done, total))
        if done >= 5:
            token.cancel()

    with pytest.raises(Cancelled):
        load_url(series["url"], progress=progress, cancel=token)
    assert seen[-1][1] == 70 and 5 <= seen[-1][0] < 70
    assert not list(pacs_env.rglob("*.part"))
    # the next load completes the series from where it stopped
    assert [v.shape for v in load_url(series["url"])] == [(35, 64, 64)] * 2


# -- errors: one clear line -----------------------------------------------------------------------------


def _one_line_error(url: str) -> str:
    with pytest.raises(LoadError) as info:
        load(url)
    text = str(info.value)
    assert "\n" not in text and PASSWORD not in text
    return text


def test_down_wrong_unauthorised_and_not_an_image_each_say_one_line(orthanc, pacs_env, monkeypatch, capsys):
    from napari_mlmi_interp.cli import main
    from napari_mlmi_interp.io.dicomweb import parse_url
    from tests.orthanc import free_port

    _study, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    _, report = _study_of(orthanc, "a report, no pixels")
    path = series["url"].split("/dicom-web", 1)[1]
    down = _one_line_error(f"http://127.0.0.1:{free_port()}/dicom-web{path}")
    assert "cannot reach the DICOMweb server" in down
    wrong = _one_line_error(f"{orthanc.rest}/dicomweb{path}")
    assert "HTTP 404" in wrong and "DICOMweb root" in wrong
    not_an_image = _one_line_error(report["url"])
    assert not_an_image.startswith(report["url"]) and "holds no image" in not_an_image
    with pytest.raises(LoadError, match="credentials do not belong"):
        parse_url(f"http://{USER}:{PASSWORD}@127.0.0.1:8042/dicom-web")
    monkeypatch.delenv("MLMI_DICOMWEB_USER")
    monkeypatch.delenv("MLMI_DICOMWEB_PASSWORD")
    refused = _one_line_error(series["url"])
    assert "HTTP 401" in refused and "MLMI_DICOMWEB_USER" in refused
    # the command line says the same in one line, exit status 2
    assert main(["info", series["url"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 401" in err[0]


def test_credentials_from_a_config_file_by_environment_variable(orthanc, pacs_env, monkeypatch, tmp_path):
    from napari_mlmi_interp.io.dicomweb import credentials_for, search

    monkeypatch.delenv("MLMI_DICOMWEB_USER")
    monkeypatch.delenv("MLMI_DICOMWEB_PASSWORD")
    config = tmp_path / "dicomweb.json"
    config.write_text(
        json.dumps(
            {
                "servers": [
                    {"url": "http://elsewhere.invalid/dicom-web", "token": "never-used"},
                    {"url": orthanc.dicomweb, "username": USER, "password_env": "ORTHANC_TEST_PW"},
                ]
            }
        )
    )
    monkeypatch.setenv("MLMI_DICOMWEB_CONFIG", str(config))
    monkeypatch.setenv("ORTHANC_TEST_PW", PASSWORD)
    credentials = credentials_for(orthanc.dicomweb)
    assert credentials.kind == "basic" and PASSWORD not in repr(credentials)
    assert len(search(orthanc.dicomweb)) == 2
    assert credentials_for("http://elsewhere.invalid/dicom-web").kind == "token"
    monkeypatch.setenv("MLMI_DICOMWEB_TOKEN", "t0ken")
    session = requests.Session()
    credentials_for(orthanc.dicomweb).apply(session)
    assert session.headers["Authorization"] == "Bearer t0ken"


# -- store back ---------------------------------------------------------------------------------------------


def _orthanc_series(orthanc, study_uid: str) -> dict[str, dict]:
    """Orthanc's own view of a study's series: {SeriesInstanceUID: {modality, instances, ...}}."""
    found = requests.post(f"{orthanc.rest}/tools/lookup", data=study_uid, auth=orthanc.auth, timeout=30)
    (study_id,) = [r["ID"] for r in found.json() if r["Type"] == "Study"]
    out = {}
    for series in orthanc.get(f"/studies/{study_id}/series"):
        tags = series["MainDicomTags"]
        out[tags["SeriesInstanceUID"]] = {
            "modality": tags.get("Modality"),
            "instances": len(series["Instances"]),
        }
    return out


def test_batch_store_puts_map_pm_and_seg_into_the_source_study(orthanc, pacs_env, tmp_path, capsys):
    import pydicom

    from napari_mlmi_interp.cli import main

    study, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    patients_before = len(orthanc.get("/patients"))
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            series["url"],
            "--model",
            "lesion-classifier",
            "--method",
            "saliency",
            "--out",
            str(out),
            "--workers",
            "0",
            "--store",
            "--json",
            "--quiet",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["done"] == 1, summary
    (case,) = (out / "cases").iterdir()
    sidecar = json.loads((case / "saliency.json").read_text())
    report = sidecar["dicom"]["store"]
    assert report["status"] == "stored"
    assert {o["object"]: o["status"] for o in report["objects"]} == {
        "derived series": "stored",
        "parametric map": "stored",
        "segmentation": "stored",
    }
    # Orthanc lists the new series in the same study, and under the same patient
    listed = _orthanc_series(orthanc, study["study_uid"])
    by_uid = {o["object"]: o["series_instance_uid"] for o in report["objects"]}
    assert listed[by_uid["derived series"]]["instances"] == 35
    assert listed[by_uid["parametric map"]]["instances"] == 1
    assert listed[by_uid["segmentation"]]["modality"] == "SEG"
    assert len(orthanc.get("/patients")) == patients_before
    # read back over DICOMweb: the derived series lies on the source grid
    (source,) = [v for v in load(series["url"]) if v.metadata.get("EchoNumber") == 1]
    (derived,) = load(f"{study['url']}/series/{by_uid['derived series']}")
    np.testing.assert_allclose(derived.geometry.index_to_lps, source.geometry.index_to_lps, atol=1e-4)
    assert derived.shape == source.shape
    local_map = load(case / "saliency.nii.gz")[0]
    peak = np.unravel_index(np.argmax(local_map.array), local_map.shape)
    assert np.unravel_index(np.argmax(derived.array), derived.shape) == peak
    from napari_mlmi_interp.io.dicomweb import connect, parse_url

    client = connect(parse_url(study["url"]))
    (seg,) = client.retrieve_series(study["study_uid"], by_uid["segmentation"])
    first = sorted(p for p in Path(source.source).glob("*.dcm"))[0]
    frame_of_reference = pydicom.dcmread(first, stop_before_pixels=True).FrameOfReferenceUID
    assert seg.StudyInstanceUID == study["study_uid"] and seg.FrameOfReferenceUID == frame_of_reference
    assert str(seg.SOPClassUID) == SEGMENTATION_STORAGE


class _FlakyProxy:
    """A loopback HTTP proxy in front of Orthanc that answers 503 to chosen STOW-RS requests."""

    def __init__(self, target: str, refuse) -> None:
        self.target, self.refuse, self.posts = target, refuse, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive as the client expects; every reply has a length

            def log_message(self, *args):
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if method == "POST":
                    proxy.posts += 1
                    if proxy.refuse(proxy.posts, body):
                        self.send_response(503, "Service Unavailable")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                r = requests.request(method, proxy.target + self.path, data=body, headers=headers, timeout=30)
                self.send_response(r.status_code, r.reason)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "transfer-encoding",
                        "content-length",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _exported(shared_dicom, folder: Path) -> tuple:
    from napari_mlmi_interp.export import export_dicom

    volume = load(shared_dicom.joinpath(*PDT2))[0]
    amap = volume.with_array(np.random.default_rng(1).normal(size=volume.shape).astype(np.float32))
    return volume, export_dicom(amap, volume, folder, method="saliency", target="lesion", keep_identity=True)


def test_a_store_is_retried_and_reported_per_object(orthanc, pacs_env, shared_dicom, tmp_path):
    from napari_mlmi_interp.export import describe_store, store_export

    _, exported = _exported(shared_dicom, tmp_path / "a")
    # the first two requests fail (503), the retries pass: everything stored, attempts counted
    proxy = _FlakyProxy(orthanc.rest, lambda n, body: n <= 2)
    try:
        report = store_export(proxy.dicomweb, exported, pause=lambda s: None)
    finally:
        proxy.close()
    assert report["status"] == "stored"
    assert report["objects"][0]["attempts"] == 3  # the first instance took three tries
    # the SEG is always refused: it alone is failed, after 1 + 3 tries, and the report says so
    _, exported = _exported(shared_dicom, tmp_path / "b")
    pauses: list[float] = []
    proxy = _FlakyProxy(orthanc.rest, lambda n, body: SEGMENTATION_STORAGE.encode() in body)
    try:
        report = store_export(proxy.dicomweb, exported, pause=pauses.append)
    finally:
        proxy.close()
    status = {o["object"]: (o["status"], o["stored"], o["instances"]) for o in report["objects"]}
    assert status == {
        "derived series": ("stored", 35, 35),
        "parametric map": ("stored", 1, 1),
        "segmentation": ("failed", 0, 1),
    }
    assert report["status"] == "failed" and pauses == [0.5, 1.0, 2.0]
    line = describe_store(report)
    assert "NOT all stored" in line and "segmentation 0/1 failed (HTTP 503 Service Unavailable)" in line


def test_a_failed_store_fails_the_batch_case(orthanc, pacs_env, tmp_path, monkeypatch, capsys):
    from napari_mlmi_interp.cli import main
    from napari_mlmi_interp.export import stow

    monkeypatch.setattr(stow.time, "sleep", lambda s: None)
    _, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    proxy = _FlakyProxy(orthanc.rest, lambda n, body: SEGMENTATION_STORAGE.encode() in body)
    try:
        url = series["url"].replace(orthanc.dicomweb, proxy.dicomweb)
        code = main(
            [
                "batch",
                url,
                "--model",
                "lesion-classifier",
                "--method",
                "saliency",
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "0",
                "--store",
                "--quiet",
            ]
        )
    finally:
        proxy.close()
    printed = capsys.readouterr().out
    assert code == 1
    assert "0 of 1 cases done" in printed and "segmentation 0/1 failed" in printed
    assert not list((tmp_path / "out" / "cases").glob("*/case.json"))  # not done: a rerun tries again


def test_store_needs_a_dicomweb_source_or_a_server(shared_dicom):
    from napari_mlmi_interp.cohort.to_dicom import store_target
    from napari_mlmi_interp.errors import InputError

    volume = load(shared_dicom.joinpath(*PDT2))[0]
    with pytest.raises(InputError, match="read from disk"):
        store_target(volume, "source")
    assert store_target(volume, "http://127.0.0.1:1/dicom-web") == "http://127.0.0.1:1/dicom-web"
    assert store_target(volume, None) is None


def test_a_manifest_may_list_dicomweb_urls(tmp_path):
    from napari_mlmi_interp.cohort.manifest import read_cases

    url = "http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/4.5.6"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"scan,label\n{url},1\nlocal.nii.gz,0\n")
    cases = read_cases(manifest)
    assert cases[0].scan == url and cases[0].input == url
    assert cases[1].scan == (tmp_path / "local.nii.gz").resolve()
    (single,) = read_cases(url + "/")
    assert single.scan == url and single.key == cases[0].key


# -- the napari panel -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_plugin_settings(monkeypatch, tmp_path):
    """napari's plugin settings in this test's folder (as napari's own ``plugin_settings`` fixture)."""
    from napari import settings as napari_settings

    napari_settings._clear_plugin_settings_cache()
    monkeypatch.setattr(napari_settings, "_CFG_PATH", str(tmp_path / "napari" / "settings.yaml"))
    yield tmp_path / "napari"
    napari_settings._clear_plugin_settings_cache()


@pytest.mark.gui
def test_pacs_panel_searches_opens_in_mm_and_sends_an_explanation_back(
    make_napari_viewer, orthanc, pacs_env, fresh_plugin_settings, shared_dicom, widgets, tmp_path
):
    from PIL import Image

    from napari_mlmi_interp._pacs_servers import recent_servers
    from napari_mlmi_interp._widgets import PacsWidget
    from napari_mlmi_interp._widgets.jobs import wait_while_busy
    from napari_mlmi_interp.explain import explain
    from napari_mlmi_interp.models import resolve_model
    from napari_mlmi_interp.overlays import volume_of_layer
    from napari_mlmi_interp.overlays.explanation_layers import add_explanation_layers, explanation_layer_data

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    panel = PacsWidget(viewer)
    widgets.append(panel)
    viewer.window.add_dock_widget(panel, name="PACS (DICOMweb)", area="right")
    panel.server.setCurrentText(orthanc.dicomweb)
    panel.modality.setText("MR")
    panel.search()
    wait_while_busy(panel, 60)
    rows = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())]
    studies = {panel.table.item(r, 4).text() for r in range(panel.table.rowCount())}
    assert "PCK-Miskowiak^ALTIBRAIN" in studies
    assert "pd+t2_tse_sag_ISO_1.8mm" in rows and "a report, no pixels" not in rows, panel.status.text()
    assert recent_servers() == [orthanc.dicomweb]  # remembered in napari's plugin settings
    assert orthanc.dicomweb in (fresh_plugin_settings / "napari-mlmi-interp.yaml").read_text()
    panel.table.selectRow(rows.index("pd+t2_tse_sag_ISO_1.8mm"))
    panel.open_selected()
    wait_while_busy(panel, 120)
    assert len(viewer.layers) == 2, panel.status.text()
    reference = load(shared_dicom.joinpath(*PDT2))
    for layer, volume in zip(viewer.layers, reference):
        shown = volume_of_layer(layer)
        np.testing.assert_allclose(shown.geometry.index_to_lps, volume.geometry.index_to_lps, atol=1e-6)
        assert layer.units[0] == "mm" or str(layer.units[0]) in ("millimeter", "mm")
    # an explanation of the opened scan, sent back into its study from the panel
    viewer.layers[1].visible = False  # the PD echo beneath the map, as a reader would look
    scan = viewer.layers[0]
    result = explain(volume_of_layer(scan), resolve_model("lesion-classifier"), "saliency")
    add_explanation_layers(
        viewer, explanation_layer_data(result, scan_name=scan.name, method_title="Saliency")
    )
    assert panel.heatmap.count() == 1 and panel.send_button.isEnabled()
    panel.send_selected()
    wait_while_busy(panel, 120)
    report = panel.last_store
    assert report["status"] == "stored", panel.status.text()
    assert panel.status.text().startswith("Sent: stored in")
    shot = tmp_path / "pacs_widget.png"
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(shot)
    pixels = np.asarray(Image.open(shot))[..., :3]
    assert pixels.shape[1] >= 1000 and pixels.std() > 20
    if os.environ.get("MLMI_SCREENSHOT_DIR"):  # docs/images/pacs_widget.png is made this way
        Image.open(shot).save(Path(os.environ["MLMI_SCREENSHOT_DIR"]) / "pacs_widget.png")
    study_uid = reference[0].references["StudyInstanceUID"]
    listed = _orthanc_series(orthanc, study_uid)
    assert {o["series_instance_uid"] for o in report["objects"]} <= set(listed)


def test_pacs_store_command_sends_a_folder_of_exports(orthanc, pacs_env, shared_dicom, tmp_path, capsys):
    from napari_mlmi_interp.cli import main

    volume, exported = _exported(shared_dicom, tmp_path / "export")
    assert main(["pacs", "store", orthanc.dicomweb, str(tmp_path / "export"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"stored": 37, "failed": []}  # 35 derived slices, the Parametric Map, the SEG
    import pydicom

    listed = _orthanc_series(orthanc, volume.references["StudyInstanceUID"])
    seg = pydicom.dcmread(exported["segmentation"], stop_before_pixels=True)
    derived = pydicom.dcmread(exported["derived_series"][0], stop_before_pixels=True)
    assert listed[str(seg.SeriesInstanceUID)]["modality"] == "SEG"
    assert listed[str(derived.SeriesInstanceUID)]["instances"] == 35
    assert main(["pacs", "store", orthanc.dicomweb, str(tmp_path / "nothing-here")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.gui
def test_napari_opens_a_dicomweb_url_with_the_plugins_reader(
    make_napari_viewer, orthanc, pacs_env, shared_dicom
):
    from napari_mlmi_interp._reader import get_reader

    _, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    assert get_reader(series["url"]) is not None
    viewer = make_napari_viewer()
    layers = viewer.open(series["url"], plugin="napari-mlmi-interp")
    assert [ly.name for ly in layers] == [v.name for v in load(shared_dicom.joinpath(*PDT2))]
    assert all(str(u) in ("mm", "millimeter") for u in layers[0].units)


def test_pacs_benchmark_runs_and_says_how_long_each_open_took(tmp_path, orthanc):
    import subprocess
    import sys

    out = tmp_path / "pacs.json"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "pacs.py"), "--repeats", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(out.read_text())
    assert {"disk_s", "dicomweb_cold_s", "dicomweb_cached_s"} <= set(numbers)
    assert all(numbers[k] > 0 for k in ("disk_s", "dicomweb_cold_s", "dicomweb_cached_s"))


def test_credentials_in_the_file_go_to_that_server_only():
    from napari_mlmi_interp.io.dicomweb.auth import _same_server

    assert _same_server("http://127.0.0.1:8042/dicom-web", "http://127.0.0.1:8042/dicom-web")
    assert _same_server("http://127.0.0.1:8042", "http://127.0.0.1:8042/dicom-web")
    assert not _same_server("https://pacs.example.org", "https://pacs.example.org.evil.net/dicom-web")
    assert not _same_server("http://127.0.0.1:8042", "http://127.0.0.1:80421/dicom-web")
    assert not _same_server("http://h/dicom", "http://h/dicom-web")
    assert not _same_server("https://h/dicom-web", "http://h/dicom-web")


def test_a_uid_from_the_server_never_names_a_path_outside_the_cache(pacs_env):
    from napari_mlmi_interp.io.dicomweb import DicomwebError, parse_url
    from napari_mlmi_interp.io.dicomweb.retrieve import _checked_uid

    url = parse_url("http://127.0.0.1:1/dicom-web/studies/1.2")
    assert _checked_uid("1.2.840.10008", "Series Instance UID", url) == "1.2.840.10008"
    for bad in ("../../home/u/scans", "1.2/../3", "", None, "1." + "2" * 70):
        with pytest.raises(DicomwebError, match="not a DICOM UID"):
            _checked_uid(bad, "Series Instance UID", url)


def test_a_store_rerun_does_not_skip_cases_done_without_storing(orthanc, pacs_env, tmp_path, capsys):
    from napari_mlmi_interp.cli import main

    study, series = _study_of(orthanc, "pd+t2_tse_sag_ISO_1.8mm")
    out = str(tmp_path / "out")
    common = [
        "--model",
        "lesion-classifier",
        "--method",
        "saliency",
        "--out",
        out,
        "--workers",
        "0",
        "--quiet",
    ]
    assert main(["batch", series["url"], *common]) == 0  # maps only
    capsys.readouterr()
    before = set(_orthanc_series(orthanc, study["study_uid"]))
    assert main(["batch", series["url"], *common, "--store", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["skipped"]) == (1, 0)  # run again: it had stored nothing
    assert len(set(_orthanc_series(orthanc, study["study_uid"])) - before) == 3  # derived, PM, SEG
    assert main(["batch", series["url"], *common, "--store", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1  # stored: done
