"""The DICOMweb servers the PACS panel used last, kept in napari's plugin settings.

Declared in the manifest (``contributions.configurations.pacs.recent_servers``: one string,
the roots separated by spaces, as npe2 settings hold no lists), so napari
saves them in ``<napari's config folder>/napari-mlmi-interp.yaml`` (auto-saved on change)
and shows them in its Preferences. Only DICOMweb roots are kept, never a credential (a URL
cannot hold one: :func:`~napari_mlmi_interp.io.dicomweb.parse_url` refuses it). Where napari
has no settings for the plugin (a source tree that is not installed), the list lives for
the session only.
"""

from __future__ import annotations

from typing import Any

from .errors import MlmiError
from .io.dicomweb.url import parse_url

__all__ = ["MAX_RECENT", "recent_servers", "remember_server"]

PLUGIN = "napari-mlmi-interp"
MAX_RECENT = 8
_SESSION: list[str] = []


def _settings() -> Any:
    """The plugin's ``pacs`` settings section, or None where napari has none for it."""
    try:
        from napari.settings import get_plugin_settings

        return get_plugin_settings(PLUGIN).pacs
    except (ImportError, KeyError, AttributeError):
        return None


def recent_servers() -> list[str]:
    """The servers used last, newest first."""
    section = _settings()
    stored = str(section.recent_servers or "").split() if section is not None else list(_SESSION)
    return stored[:MAX_RECENT]


def remember_server(url: str) -> list[str]:
    """Put ``url``'s DICOMweb root first in the recent list (saved); the list, newest first.

    A text that is not a DICOMweb URL is not remembered.
    """
    try:
        root = parse_url(url).root
    except MlmiError:
        return recent_servers()
    servers = [root] + [s for s in recent_servers() if s != root]
    servers = servers[:MAX_RECENT]
    section = _settings()
    if section is not None:
        section.recent_servers = " ".join(servers)
    else:
        _SESSION[:] = servers
    return servers
