"""Atomic file writes: the one way dslrify replaces a file (photos, checkpoints, ONNX exports).

``with atomic_path(dst) as tmp: write(tmp)`` writes to a temporary file beside ``dst`` (same suffix, so
format inference by extension still works), flushes it to disk, and renames it onto ``dst`` only when
the block succeeds; on any exception the temporary file is removed and ``dst`` is untouched. A crash
therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dst``; on success it replaces ``dst`` (see the module docstring)."""
    dst = Path(dst)
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".tmp{dst.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private (0600) files; give a new file's permissions
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
