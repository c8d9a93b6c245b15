"""User-facing errors.

Every mistake a user can make (a corrupt file, a missing column, a wrong pixel
size) raises :class:`PixerError` with one line that names the file and the
problem. The CLI prints that line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import os


class PixerError(Exception):
    """An error caused by user input, reported as a single line."""


def file_error(path: str | os.PathLike, problem: str) -> PixerError:
    """Build a :class:`PixerError` of the form ``"<path>: <problem>"``."""
    return PixerError(f"{os.fspath(path)}: {problem}")
