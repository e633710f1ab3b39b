"""DICOMweb as an input source: search (QIDO-RS) and retrieve (WADO-RS) into a UID-keyed cache.

A study or series URL is accepted wherever a path is (:func:`napari_mlmi_interp.io.load`):
the instances are brought into the cache (:mod:`.cache`) and read through the same DICOM
code path as a folder. Credentials come from the environment or a config file (:mod:`.auth`),
never from the URL or the command line. Storing derived objects back (STOW-RS) is
:mod:`napari_mlmi_interp.export.stow`.
"""

from __future__ import annotations

from .auth import Credentials, config_path, credentials_for
from .cache import cache_root, evict
from .client import DicomwebError, call, connect
from .retrieve import FetchCancelled, fetch, load_url, source_url
from .search import search
from .url import DicomwebURL, is_dicomweb_url, parse_url

__all__ = [
    "Credentials",
    "DicomwebError",
    "DicomwebURL",
    "FetchCancelled",
    "cache_root",
    "call",
    "config_path",
    "connect",
    "credentials_for",
    "evict",
    "fetch",
    "is_dicomweb_url",
    "load_url",
    "parse_url",
    "search",
    "source_url",
]
