"""Atomic file writes: the one way dslrify replaces a file (photos, checkpoints, ONNX exports).

``with atomic_path(dst) as tmp: write(tmp)`` writes to a temporary file beside ``dst``, flushes it to
disk, and renames it onto ``dst`` only when the block succeeds; on any exception the temporary file is
removed and ``dst`` is untouched. A crash therefore never leaves a half-written file under the final
name.

Temporaries are named ``.dslrify-<pid>-<8 hex>.tmp`` whatever ``dst`` is called: short (a temporary
name fits wherever the final name fits), recognisable, and without the final extension, so writers
pass the format to their encoder explicitly. A process killed mid-write (SIGKILL, power loss) leaves
its temporary behind; the first write of a later process into that folder removes the temporaries of
processes that no longer run (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_NAME = re.compile(r"\.dslrify-(\d+)-[0-9a-f]{8}\.tmp")
_cleaned: set[str] = set()  # folders this process has cleaned already
_cleaned_lock = threading.Lock()


@contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dst``; on success it replaces ``dst`` (see the module docstring)."""
    dst = Path(dst)
    _clean_once(dst.parent)
    tmp = _new_temporary(dst.parent)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def real_path(path: str | os.PathLike) -> Path:
    """``path`` with symbolic links resolved, for comparing paths (is this output one of the inputs?).

    Unlike ``Path.resolve()`` on Python < 3.13, it never raises on a symbolic link loop: the looping
    part stays as it is, and reading or writing it later gives the error.
    """
    return Path(os.path.realpath(path))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete dslrify's temporaries in ``folder`` whose process has ended; return what was deleted.

    Only names of the form ``.dslrify-<pid>-<8 hex>.tmp`` are touched, and only when no process ``pid``
    runs (a running writer, ours or another user's, keeps its file). A folder that cannot be listed is
    left alone: the write that follows reports the real problem.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return removed
    for entry in entries:
        found = TEMPORARY_NAME.fullmatch(entry.name)
        if found and not _running(int(found[1])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass  # removed meanwhile by another process, or not ours to remove
    return removed


def _clean_once(folder: Path) -> None:
    """remove_stale_temporaries, the first time this process writes into ``folder`` (one listing)."""
    key = os.path.abspath(folder)
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_temporaries(folder)


def _new_temporary(folder: Path) -> Path:
    """Create an empty temporary file in ``folder`` with a new file's usual permissions (0666 & ~umask)."""
    while True:
        tmp = folder / f".dslrify-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without signalling)."""
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill terminates whatever signal is given
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a pid we cannot check: keep its file
    return True
