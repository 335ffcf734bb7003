"""The record of a Ray job: a JSON Lines manifest, one row per photo, and the job's report.

Each row is ``{"input", "output", "status", "error", "seconds", "worker"}``: status ``done``,
``skipped`` (its output existed: never replaced) or ``failed`` (``error`` says why, with advice);
``seconds`` is the worker's time for that photo (decode, enhance, encode, write); ``worker`` is
``host:pid``. A row is written and flushed as soon as its result reaches the driver, and a re-run
appends its own rows, so the last row of an input is its state. The outputs themselves are the
truth the resume relies on (an output exists only complete); the manifest says what happened.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dslrify.cluster.worker import DONE, FAILED, SKIPPED
from dslrify.errors import DslrifyError

MANIFEST_NAME = "dslrify-manifest.jsonl"


@dataclass(frozen=True)
class ManifestRow:
    """One photo's outcome (``output`` is empty for an input refused before any work)."""

    input: str
    output: str
    status: str
    error: str = ""
    seconds: float = 0.0
    worker: str = ""

    def as_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


class Manifest:
    """Append-only JSON Lines file; each row is flushed at once so that a crash loses no finished row."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        except OSError as e:
            raise DslrifyError(
                f"cannot write the manifest {self.path}: {e.strerror or e}", "give a writable manifest path"
            ) from e

    def write(self, row: ManifestRow) -> None:
        self._file.write(row.as_json() + "\n")
        self._file.flush()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a manifest, oldest first (a last line cut short by a crash is left out)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


@dataclass
class DatasetReport:
    """What a Ray job did in this run (counts: a job may hold millions of photos; the rows are in the
    manifest). ``interrupted``: stopped by Ctrl+C or SIGTERM."""

    total: int
    manifest: str
    done: int = 0
    skipped: int = 0
    failures: list[ManifestRow] = field(default_factory=list)
    workers: int = 0
    earlier_outputs: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, row: ManifestRow) -> None:
        if row.status == DONE:
            self.done += 1
        elif row.status == SKIPPED:
            self.skipped += 1
        else:
            assert row.status == FAILED, row.status
            self.failures.append(row)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed

    def summary(self) -> str:
        """One line: ``40 done, 2 skipped, 1 failed in 12.3 s (3.25 photos/s, 4 workers); manifest: ...``."""
        line = f"{self.done} done, {self.skipped} skipped, {self.failed} failed"
        if self.interrupted:
            left = self.total - self.finished
            line = f"interrupted: {line}, {left} not started or not finished (run it again to finish)"
        rate = f"{self.done / self.seconds:.2f} photos/s, " if self.seconds > 0 and self.done else ""
        line += f" in {self.seconds:.1f} s ({rate}{self.workers} workers); manifest: {self.manifest}"
        if self.earlier_outputs:
            line += f"; left out {self.earlier_outputs} earlier output(s) whose names end with the suffix"
        return line

    @property
    def exit_code(self) -> int:
        """As ``dslrify enhance``: 0 when nothing failed, 1 otherwise, 130 if stopped."""
        return 130 if self.interrupted else int(self.failed > 0)
