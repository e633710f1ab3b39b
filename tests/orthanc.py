"""A real Orthanc with its DICOMweb plugin, for the PACS tests: no system service, no fixed port.

:class:`Orthanc` writes a configuration into a temporary folder (storage, index and log
there too), starts the ``Orthanc`` binary of the Debian packages ``orthanc`` and
``orthanc-dicomweb`` on a free loopback port with its DICOM (DIMSE) server off and HTTP
basic authentication on, waits until its REST API answers, uploads files through
``POST /instances`` and stops it at the end. ``scripts/test.sh`` installs the packages
when they are missing, as it does for Xvfb.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "mlmi-reader", "not-a-real-secret"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """Why Orthanc cannot run here (None when it can)."""
    if not Path(ORTHANC).is_file():
        return f"the Orthanc binary ({ORTHANC}) is missing: apt-get install orthanc orthanc-dicomweb"
    if not DICOMWEB_PLUGIN.is_file():
        return f"the DICOMweb plugin ({DICOMWEB_PLUGIN}) is missing: apt-get install orthanc-dicomweb"
    return None


class Orthanc:
    """One Orthanc server on ``127.0.0.1:<free port>`` with DICOMweb at ``/dicom-web``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.auth = (USER, PASSWORD)

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root, as a user gives it."""
        return f"{self.rest}/dicom-web"

    def _config(self) -> Path:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "mlmi-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "HttpTimeout": 30,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False},
            "StableAge": 1,
            "SaveJobs": False,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout_s: float = 60.0) -> Orthanc:
        config = self._config()
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            [ORTHANC, f"--logdir={self.folder}", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.process.returncode}): {self.log_tail()}")
            try:
                if requests.get(f"{self.rest}/system", auth=self.auth, timeout=2).ok:
                    return self
            except requests.RequestException:  # not listening yet, or slow to answer
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        text = "\n".join(
            p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")) if p.is_file()
        )
        return "\n".join(text.splitlines()[-n:])

    def upload(self, files) -> list[str]:
        """POST each DICOM file to ``/instances``; the Orthanc ids of the instances."""
        ids = []
        for path in files:
            r = requests.post(
                f"{self.rest}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30
            )
            r.raise_for_status()
            ids.append(r.json()["ID"])
        return ids

    def get(self, route: str):
        r = requests.get(f"{self.rest}{route}", auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
