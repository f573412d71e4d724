"""One exception hierarchy, so the CLI can turn any user mistake into a single line.

Every error carries the offending path (when there is one) and a hint saying what to do; the CLI prints
``path: message (hint)`` and exits with status 2. Anything that is not a :class:`SpatialxError` is a bug and keeps
its traceback.
"""

from __future__ import annotations

from os import PathLike


class SpatialxError(Exception):
    """Root of every error spatialx raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, path: str | PathLike[str] | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ReadError(SpatialxError):
    """An input file is missing, unreadable, truncated or not a raster."""


class InputMismatchError(SpatialxError):
    """Inputs do not fit together: CRS, footprints, band counts, ratio."""


class SensorConfigError(SpatialxError):
    """A sensor profile is unknown or malformed."""

    def __init__(self, message: str, path: str | PathLike[str] | None = None, key: str | None = None,
                 hint: str | None = None):
        super().__init__(f"{key}: {message}" if key else message, path=path, hint=hint)
        self.key = key


class MethodError(SpatialxError):
    """A fusion method is unknown, misconfigured, or not available in this installation."""


class OutputError(SpatialxError):
    """The output cannot be written: it exists, or its directory is missing or read-only."""
