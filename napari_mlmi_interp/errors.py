"""The one base class for errors a user can act on.

Every error whose message is meant for the person at the keyboard (a file that cannot be
read, a model that does not fit the scan, an option out of range, a study file that is
not ours) derives from :class:`MlmiError`. The command line prints such an error as one
line (``mlmi-interp: error: ...``, exit status 2) and the panels show it in their status
line; anything else is a bug in this package and keeps its traceback (``--debug``) with an
"internal error, please report" line.

Subclasses that replace a ``ValueError`` also derive from it, so callers that caught
``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["Cancelled", "InputError", "MlmiError"]


class MlmiError(Exception):
    """An error the user can act on; its message is one readable sentence (with numbers)."""


class InputError(MlmiError, ValueError):
    """An argument, option or setting out of range, or a combination that cannot work.

    Examples
    --------
    >>> err = InputError("top-k percent must be in (0, 100], got 0")
    >>> isinstance(err, MlmiError), isinstance(err, ValueError)
    (True, True)
    """


class Cancelled(Exception):
    """Raised at the next check once a job's cancel token is set (a model batch, a download).

    Not an :class:`MlmiError`: nothing went wrong, the user asked to stop.
    """
