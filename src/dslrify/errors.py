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


def first_line(e: BaseException, limit: int = 300, lines: int = 1) -> str:
    """The first line (or ``lines`` lines, joined) of an exception's text, cut at ``limit`` characters.

    Some libraries append whole graphs or tables to their messages; a user gets one line. The
    exception's type name stands in for an empty text.
    """
    text = [t.strip() for t in str(e).strip().splitlines()[:lines]]
    line = " ".join(text) if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
