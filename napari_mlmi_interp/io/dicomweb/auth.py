"""Credentials for a DICOMweb server: from the environment or a config file, never the URL.

Looked up in this order:

1. ``MLMI_DICOMWEB_TOKEN``: a bearer token (``Authorization: Bearer ...``);
2. ``MLMI_DICOMWEB_USER`` and ``MLMI_DICOMWEB_PASSWORD``: HTTP basic authentication;

   these two go to *every* server the process talks to (for one server; with several, use
   the file);
3. the config file ``MLMI_DICOMWEB_CONFIG`` (default
   ``~/.config/napari-mlmi-interp/dicomweb.json``)::

       {"servers": [
         {"url": "https://pacs.example.org/dicom-web", "token_env": "PACS_TOKEN"},
         {"url": "http://127.0.0.1:8042/dicom-web", "username": "reader", "password_env": "ORTHANC_PW"}
       ]}

   Per server: the entry with the same scheme, host and port whose path is the URL's or above
   it (on ``/`` boundaries) wins, the longest first. A secret may be written in
   the file (``token``, ``password``) or, better, named by an environment variable
   (``token_env``, ``password_env``).

Nothing here prints, logs or stores a secret; a :class:`Credentials` repr names only its source.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import LoadError

__all__ = ["Credentials", "config_path", "credentials_for"]


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to authenticate to one server; ``repr`` never shows the secret."""

    kind: str  # "none", "token" or "basic"
    source: str  # where they came from, for messages
    token: str = ""
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r}, source={self.source!r})"

    def apply(self, session: Any) -> None:
        """Set them on a ``requests.Session``."""
        if self.kind == "token":
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.kind == "basic":
            session.auth = (self.username, self.password)


def user_path(variable: str, xdg: str, default: str, name: str) -> Path:
    """``$variable``, else ``$xdg`` (or ``~/<default>``) ``/napari-mlmi-interp/<name>`` (XDG base dirs)."""
    given = os.environ.get(variable)
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get(xdg) or Path.home() / default) / "napari-mlmi-interp" / name


def config_path() -> Path:
    """The DICOMweb config file: ``MLMI_DICOMWEB_CONFIG`` or the per-user default."""
    return user_path("MLMI_DICOMWEB_CONFIG", "XDG_CONFIG_HOME", ".config", "dicomweb.json")


def _secret(entry: dict[str, Any], key: str, path: Path) -> str:
    env = entry.get(f"{key}_env")
    if env:
        value = os.environ.get(str(env))
        if value is None:
            raise LoadError(f"the DICOMweb config names ${env} for the {key}, but it is not set", path)
        return value
    return str(entry.get(key) or "")


def _from_file(root: str) -> Credentials | None:
    path = config_path()
    if not path.is_file():
        return None
    try:
        servers = json.loads(path.read_text(encoding="utf-8")).get("servers", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise LoadError(f"the DICOMweb config file cannot be read ({type(exc).__name__})", path) from None
    if not isinstance(servers, list):
        raise LoadError("the DICOMweb config file's 'servers' must be a list", path)
    matches = [s for s in servers if isinstance(s, dict) and _same_server(str(s.get("url", "")), root)]
    if not matches:
        return None
    entry = max(matches, key=lambda s: len(str(s["url"])))
    source = f"{path} ({str(entry['url']).rstrip('/')})"
    token = _secret(entry, "token", path)
    if token:
        return Credentials("token", source, token=token)
    if entry.get("username"):
        return Credentials(
            "basic", source, username=str(entry["username"]), password=_secret(entry, "password", path)
        )
    return Credentials("none", source)


def _same_server(entry: str, root: str) -> bool:
    """Whether the config entry ``entry`` covers ``root``: same scheme, host and port, and a
    path that is the entry's or below it (``https://pacs.org`` does not cover ``pacs.org.evil.net``)."""
    a, b = urlsplit(entry.strip()), urlsplit(root)
    if not a.scheme or not a.hostname:
        return False
    default = {"http": 80, "https": 443}

    def port(u: Any) -> int | None:
        try:
            return u.port or default.get(u.scheme)
        except ValueError:
            return None

    if (a.scheme.lower(), a.hostname, port(a)) != (b.scheme.lower(), b.hostname, port(b)):
        return False
    path = a.path.rstrip("/")
    return b.path.rstrip("/") == path or b.path.startswith(f"{path}/")


def credentials_for(root: str) -> Credentials:
    """The credentials for the DICOMweb server at ``root`` (kind ``"none"`` when there are none)."""
    token = os.environ.get("MLMI_DICOMWEB_TOKEN")
    if token:
        return Credentials("token", "MLMI_DICOMWEB_TOKEN", token=token)
    user = os.environ.get("MLMI_DICOMWEB_USER")
    if user:
        return Credentials(
            "basic",
            "MLMI_DICOMWEB_USER/PASSWORD",
            username=user,
            password=os.environ.get("MLMI_DICOMWEB_PASSWORD", ""),
        )
    return _from_file(root) or Credentials("none", "no credentials")
