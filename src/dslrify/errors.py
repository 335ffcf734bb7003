"""The one exception type users see: what went wrong, and what to do about it."""

from __future__ import annotations


class DslrifyError(Exception):
    """An error caused by the user's input or environment, with advice.

    The CLI prints ``str(error)`` as one line (no traceback unless ``--debug``).
    """

    def __init__(self, message: str, advice: str | None = None) -> None:
        self.message = message
        self.advice = advice
        super().__init__(f"{message} — {advice}" if advice else message)


class PhotoError(DslrifyError):
    """A photo could not be read or written."""


class ModelError(DslrifyError):
    """A model name, checkpoint or architecture is wrong."""


class DataError(DslrifyError):
    """A dataset folder or file is wrong."""


class OutputExistsError(PhotoError):
    """The output file exists and overwriting was not asked for (a batch counts it as skipped)."""
