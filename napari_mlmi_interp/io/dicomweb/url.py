"""DICOMweb addresses: a server's root, optionally narrowed to one study or one series.

A user gives a study or series URL wherever a path is accepted::

    http://pacs.example.org:8042/dicom-web/studies/1.2.3[/series/4.5.6]

The part before ``/studies/`` is the DICOMweb root (where QIDO-RS, WADO-RS and STOW-RS
live). Credentials never travel in the URL (it is printed, logged and kept in provenance):
a ``user:password@`` is refused with where to put them instead (:mod:`.auth`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import LoadError

__all__ = ["UID", "DicomwebURL", "is_dicomweb_url", "parse_url"]

_UID = r"[0-9]+(?:\.[0-9]+)*"
#: A DICOM UID: digits and dots (at most 64 characters, checked where it is used).
UID = re.compile(rf"^{_UID}$")
_PATH = re.compile(rf"^(?P<root>.*?)(?:/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID}))?)?/*$")


def is_dicomweb_url(text: object) -> bool:
    """Whether ``text`` is an ``http://`` or ``https://`` address (cheap; never raises)."""
    return isinstance(text, str) and text[:8].lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class DicomwebURL:
    """A DICOMweb root and, optionally, one study (and one series of it).

    Attributes
    ----------
    root : str
        The DICOMweb root, without a trailing slash (``http://host:8042/dicom-web``).
    study, series : str or None
        Study and Series Instance UIDs.
    """

    root: str
    study: str | None = None
    series: str | None = None

    def __str__(self) -> str:
        text = self.root
        if self.study:
            text += f"/studies/{self.study}"
            if self.series:
                text += f"/series/{self.series}"
        return text

    def with_series(self, series: str) -> DicomwebURL:
        """The URL of one series of this study."""
        return DicomwebURL(self.root, self.study, series)

    @property
    def server(self) -> str:
        """``scheme://host:port`` (what a message may name)."""
        parts = urlsplit(self.root)
        return f"{parts.scheme}://{parts.netloc}"


def parse_url(text: str) -> DicomwebURL:
    """Split a DICOMweb URL into root, study and series.

    Raises
    ------
    LoadError
        Not ``http(s)``, no host, credentials in the URL, a query or fragment, or a series
        without its study.

    Examples
    --------
    >>> parse_url("http://127.0.0.1:8042/dicom-web/studies/1.2/series/3.4")
    DicomwebURL(root='http://127.0.0.1:8042/dicom-web', study='1.2', series='3.4')
    """
    if not is_dicomweb_url(text):
        raise LoadError(f"not a DICOMweb URL (it must start with http:// or https://): {text!r}")
    parts = urlsplit(text.strip())
    if parts.username is not None or parts.password is not None:
        raise LoadError(
            "credentials do not belong in a DICOMweb URL (it is printed and logged): remove "
            "'user:password@' and set MLMI_DICOMWEB_TOKEN, or MLMI_DICOMWEB_USER and "
            "MLMI_DICOMWEB_PASSWORD, or the server's entry in the DICOMweb config file"
        )
    if not parts.hostname:
        raise LoadError(f"the DICOMweb URL names no host: {text!r}")
    if parts.query or parts.fragment:
        raise LoadError(f"a DICOMweb study or series URL has no '?' or '#' part: {text!r}")
    if "/series/" in parts.path and "/studies/" not in parts.path:
        raise LoadError(f"a series URL needs its study: .../studies/<uid>/series/<uid>, got {text!r}")
    match = _PATH.match(parts.path)
    path = match.group("root") if match else parts.path.rstrip("/")
    if match is None or re.search(r"/(studies|series|instances)(/|$)", path):
        raise LoadError(
            "not a DICOMweb study or series URL (expected .../studies/<StudyInstanceUID>"
            f"[/series/<SeriesInstanceUID>], UIDs of digits and dots): {text!r}"
        )
    root = f"{parts.scheme.lower()}://{parts.netloc}{path}"
    return DicomwebURL(root, match.group("study"), match.group("series"))
