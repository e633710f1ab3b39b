"""WADO-RS retrieval into the cache, then the same DICOM code path as a folder.

:func:`load_url` asks the server (QIDO-RS) which instances a series holds, retrieves the
ones the cache lacks (WADO-RS: the whole series in one streamed request when none is
cached, else instance by instance), removes cached instances the server no longer has, and
reads the series folder with :func:`~napari_mlmi_interp.io.read_dicom`: the same splitting
(echoes, orientations, repeats), geometry and errors as a folder on disk. A study URL reads
each of its series; a series without images (a report, a presentation state) is skipped
with a warning, or refused when it is the one series asked for.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import Cancelled
from ..errors import LoadError, LoadWarning
from .cache import evict, series_folder, touch
from .client import DicomwebError, call, connect
from .url import UID, DicomwebURL, parse_url

__all__ = ["FetchCancelled", "fetch", "load_url", "source_url"]

Progress = Callable[[int, int], None]

#: Instances as stored (``transfer-syntax=*``): the DICOM reader decodes JPEG, JPEG 2000,
#: JPEG-LS, RLE and deflate itself, and a server need not transcode (Orthanc's Debian build
#: cannot transcode JPEG 2000 and answers HTTP 500 to the default explicit-VR request).
AS_STORED = (("application/dicom", "*"),)


class FetchCancelled(Cancelled):
    """Raised between instances once the caller's cancel token is set (a :class:`Cancelled`)."""


def _value(item: dict[str, Any], tag: str, default: Any = None) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else default


def _checked_uid(uid: Any, what: str, url: DicomwebURL) -> str:
    """A UID the server sent, checked before it names a cache folder or file (digits and dots)."""
    text = str(uid or "")
    if not UID.match(text) or len(text) > 64:
        raise DicomwebError(f"{url.server} sent a {what} that is not a DICOM UID ({text[:70]!r})")
    return text


def instance_uids(client: Any, url: DicomwebURL, *, what: str | None = None) -> list[str]:
    """The SOP Instance UIDs the server lists in ``url``'s series (QIDO-RS), each checked."""
    found = call(
        url,
        what or f"the instances of series {url.series}",
        client.search_for_instances,
        url.study,
        url.series,
        fields=["SOPInstanceUID"],
        get_remaining=True,
    )
    return [_checked_uid(_value(item, "00080018"), "SOP Instance UID", url) for item in found]


def _series_uids(client: Any, url: DicomwebURL) -> list[str]:
    found = call(
        url, f"the series of study {url.study}", client.search_for_series, url.study, get_remaining=True
    )
    return [_checked_uid(_value(item, "0020000E"), "Series Instance UID", url) for item in found]


def _write(ds: Any, folder: Path, url: DicomwebURL) -> str:
    """One retrieved instance as ``<SOPInstanceUID>.dcm``, written atomically."""
    import pydicom

    uid = _checked_uid(getattr(ds, "SOPInstanceUID", None), "SOP Instance UID", url)
    target = folder / f"{uid}.dcm"
    tmp = folder / f".{uid}.{os.getpid()}.part"
    pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    os.replace(tmp, target)
    return uid


def _check(cancel: Any) -> None:
    if cancel is not None and getattr(cancel, "cancelled", False):
        raise FetchCancelled()


class _Counter:
    """Progress over all the instances of a fetch, in instances."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _sync_series(client: Any, url: DicomwebURL, wanted: list[str], counter: _Counter, cancel: Any) -> Path:
    """The cache folder of one series holding exactly the server's instances ``wanted``."""
    folder = series_folder(url.root, str(url.study), str(url.series))
    touch(folder)
    have = {p.stem for p in folder.glob("*.dcm")}
    for stale in have - set(wanted):
        (folder / f"{stale}.dcm").unlink(missing_ok=True)
    missing = [uid for uid in wanted if uid not in have]
    counter.step(len(wanted) - len(missing))
    what = f"the series {url.series}"
    if missing and len(missing) == len(wanted):
        stream = call(url, what, client.iter_series, url.study, url.series, media_types=AS_STORED)
        while True:
            _check(cancel)
            ds = call(url, what, next, stream, None)
            if ds is None:
                break
            _write(ds, folder, url)
            counter.step()
    else:
        for uid in missing:
            _check(cancel)
            _write(
                call(
                    url,
                    f"the instance {uid}",
                    client.retrieve_instance,
                    url.study,
                    url.series,
                    uid,
                    media_types=AS_STORED,
                ),
                folder,
                url,
            )
            counter.step()
    left = set(wanted) - {p.stem for p in folder.glob("*.dcm")}
    if left:
        raise DicomwebError(
            f"{url.server} sent {len(wanted) - len(left)} of the {len(wanted)} instances of {what}"
        )
    return folder


def fetch(
    url: str | DicomwebURL, *, progress: Progress | None = None, cancel: Any = None
) -> list[tuple[DicomwebURL, Path]]:
    """Bring a study's or a series' instances into the cache.

    Parameters
    ----------
    url : str or DicomwebURL
        A study or series URL.
    progress : callable, optional
        ``progress(done, total)`` in instances.
    cancel : object, optional
        Anything with a ``cancelled`` attribute; checked between instances
        (:class:`FetchCancelled`).

    Returns
    -------
    list of (DicomwebURL, Path)
        Each series' URL and its cache folder.
    """
    url = parse_url(url) if isinstance(url, str) else url
    if not url.study:
        raise LoadError(
            f"{url}: give a study or series URL (.../studies/<uid>[/series/<uid>]); "
            "'mlmi-interp pacs search' lists them"
        )
    client = connect(url)
    series = [url] if url.series else [url.with_series(s) for s in _series_uids(client, url)]
    if not series:
        raise DicomwebError(f"{url.server} has no series in study {url.study}")
    wanted = {s: instance_uids(client, s) for s in series}
    if url.series and not wanted[url]:
        raise DicomwebError(f"{url.server} has no instances in series {url.series} of study {url.study}")
    counter = _Counter(sum(len(w) for w in wanted.values()), progress)
    done = [(s, _sync_series(client, s, w, counter, cancel)) for s, w in wanted.items() if w]
    evict({folder for _, folder in done})
    return done


def _read_series(url: DicomwebURL, folder: Path) -> list[Any]:
    from ..dicom import read_dicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        volumes = read_dicom(folder)
    for w in caught:  # said again with the URL instead of the cache folder
        warnings.warn(str(w.message).replace(str(folder), str(url)), LoadWarning, stacklevel=3)
    for volume in volumes:
        volume.metadata["dicomweb"] = str(url)
        volume.warnings[:] = [w.replace(str(folder), str(url)) for w in volume.warnings]
    return volumes


def load_url(url: str | DicomwebURL, *, progress: Progress | None = None, cancel: Any = None) -> list[Any]:
    """Every volume of a DICOMweb study or series, read as from a folder.

    Each volume's ``source`` is its cache folder (exports read the source slices there) and
    ``metadata["dicomweb"]`` its series URL (where ``batch --store`` sends derived objects).

    Raises
    ------
    LoadError
        One sentence: the server is down, the URL is wrong, the credentials were refused,
        or the series holds no images (what :func:`read_dicom` says of its folder).
    """
    url = parse_url(url) if isinstance(url, str) else url
    volumes: list[Any] = []
    skipped: list[str] = []
    fetched = fetch(url, progress=progress, cancel=cancel)
    for series_url, folder in fetched:
        try:
            volumes.extend(_read_series(series_url, folder))
        except LoadError as exc:
            if url.series:
                raise LoadError(exc.reason, series_url) from None
            skipped.append(f"series {series_url.series}: {exc.reason}")
    if not volumes:
        raise LoadError(f"no series of the study holds images ({'; '.join(skipped)})", url)
    for msg in skipped:
        warnings.warn(f"{url}: {msg} - skipped", LoadWarning, stacklevel=2)
    volumes[0].warnings.extend(f"{msg} - skipped" for msg in skipped)
    return volumes


def source_url(volume: Any) -> str | None:
    """The DICOMweb series URL ``volume`` was read from (:func:`load_url`), or None."""
    url = (getattr(volume, "metadata", None) or {}).get("dicomweb")
    return str(url) if url else None
