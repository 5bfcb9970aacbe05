"""Exceptions raised for user mistakes. The CLI prints them as one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class OFAError(Exception):
    """Base class of every error caused by bad input, files or settings."""


class InputError(OFAError, ValueError):
    """An input (image, text, box, argument) is missing, malformed or out of range."""


class CheckpointError(OFAError):
    """A checkpoint file or folder is missing, damaged or does not match the model."""


class DownloadError(OFAError):
    """A file could not be downloaded, or what arrived is not the expected file.

    ``url`` and ``dest`` (when set) say which file to fetch by hand and where to save it.
    """

    def __init__(self, message: str, *, url: str | None = None, dest: Path | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.url, self.dest, self.reason = url, dest, reason
