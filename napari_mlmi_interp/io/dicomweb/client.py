"""One DICOMweb connection (``dicomweb-client`` on a ``requests`` session) and its errors.

Every call to the server goes through :func:`call`, which turns what ``requests`` and the
server say into one line a user can act on: the server is down, the URL is wrong, the
credentials were refused, the server took too long. The message names the server
(``scheme://host:port``) and never a credential.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import LoadError
from .auth import credentials_for
from .url import DicomwebURL

__all__ = ["DicomwebError", "call", "connect"]

T = TypeVar("T")

#: Seconds to wait for the server to connect, and to answer (``MLMI_DICOMWEB_TIMEOUT``).
DEFAULT_TIMEOUT_S = 30.0


class DicomwebError(LoadError):
    """The DICOMweb server could not be used; the message says why, in one sentence."""


def _timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("MLMI_DICOMWEB_TIMEOUT", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def connect(url: DicomwebURL) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` for ``url.root`` with its credentials set."""
    try:
        import requests
        from dicomweb_client import DICOMwebClient
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DicomwebError("reading from DICOMweb needs the 'dicomweb-client' package") from None
    session = requests.Session()
    credentials_for(url.root).apply(session)
    session.headers["User-Agent"] = "napari-mlmi-interp"
    client = DICOMwebClient(url.root, session=session, timeout=_timeout())
    # retries of a busy server are ours (export.stow), per object; reads fail fast and clearly
    client.set_http_retry_params(retry=False)
    return client


def _http_message(url: DicomwebURL, what: str, status: int, reason: str) -> str:
    if status in (401, 403):
        return (
            f"{url.server} refused the credentials for {what} (HTTP {status} {reason}): set "
            "MLMI_DICOMWEB_TOKEN, or MLMI_DICOMWEB_USER and MLMI_DICOMWEB_PASSWORD, or the server's "
            "entry in the DICOMweb config file"
        )
    if status == 404:
        return (
            f"{url.server} answered 'not found' (HTTP 404) for {what}: check the DICOMweb root "
            f"({url.root}; Orthanc's is /dicom-web) and the UIDs"
        )
    return f"{url.server} failed on {what} (HTTP {status} {reason})"


def call(url: DicomwebURL, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, with network and HTTP failures as one :class:`DicomwebError`.

    Parameters
    ----------
    what : str
        What was asked for, for the message ("the series 1.2.3", "the study search").
    """
    import requests

    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        response = exc.response
        status = response.status_code if response is not None else 0
        reason = (response.reason if response is not None else "") or ""
        raise DicomwebError(_http_message(url, what, status, reason)) from None
    except requests.Timeout:
        raise DicomwebError(
            f"{url.server} did not answer within {_timeout():g} s for {what} "
            "(MLMI_DICOMWEB_TIMEOUT sets the limit)"
        ) from None
    except requests.ConnectionError:
        raise DicomwebError(
            f"cannot reach the DICOMweb server {url.server} (is it running, and is the port right?)"
        ) from None
    except requests.RequestException as exc:
        raise DicomwebError(f"{url.server}: {what} failed ({type(exc).__name__})") from None
    except ValueError as exc:  # dicomweb-client on a reply that is not DICOMweb (wrong root)
        raise DicomwebError(
            f"{url.server} did not answer {what} as a DICOMweb server does ({str(exc)[:120]}); "
            f"check the DICOMweb root {url.root}"
        ) from None
