"""Pseudonymous case identifiers: a salted HMAC of identifiers, never the identifiers."""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["SALT_ENV", "pseudonymize"]

SALT_ENV = "MLMI_INTERP_SALT"
# A project-wide default keeps ids stable across machines for shared demo data. Studies
# with real patients should set their own secret salt in the environment variable above,
# so that a case id cannot be recomputed from a known Study Instance UID by others.
_DEFAULT_SALT = "napari-mlmi-interp/v1"


def pseudonymize(*parts: object, salt: str | None = None, length: int = 16) -> str:
    """Return ``"case-<hex>"``, a keyed hash of ``parts``.

    Parameters
    ----------
    *parts
        Identifiers (Study/Series Instance UIDs, a content hash, ...). Order matters.
    salt : str, optional
        Secret key; defaults to ``$MLMI_INTERP_SALT`` or a project default.
    length : int
        Number of hex characters kept (64 bits by default).
    """
    key = (salt or os.environ.get(SALT_ENV) or _DEFAULT_SALT).encode()
    message = "\x1f".join(str(p) for p in parts).encode()
    return "case-" + hmac.new(key, message, hashlib.sha256).hexdigest()[:length]
