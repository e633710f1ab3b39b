"""Errors and warnings raised while reading scans."""

from __future__ import annotations

from ..errors import MlmiError

__all__ = ["LoadError", "LoadWarning"]


class LoadError(MlmiError, ValueError):
    """A scan could not be read. The message names the file and the problem, in one sentence.

    Parameters
    ----------
    message : str
        What is wrong, with numbers (gap in mm, tilt in degrees, ...).
    path : str, optional
        The file or folder concerned; prefixed to the message when given.
    """

    def __init__(self, message: str, path: object = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class LoadWarning(UserWarning):
    """Something was read, but part of it was skipped or corrected (the message says what)."""
