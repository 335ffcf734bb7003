"""From what a user typed (files, folders, globs) to a finished batch of enhanced photos.

Naming rule: ``OUT_DIR / [mirrored subfolders /] STEM + suffix + ext`` (a video keeps its container).
Without ``out_dir`` outputs go beside their inputs. An input of the batch is never an output,
``overwrite`` or not. Folder scans and glob patterns leave out files whose stem already ends with the
suffix (earlier outputs). Videos run after the photos. Nothing here prints or exits: :func:`run_batch`
reports through a callback and returns a :class:`BatchReport`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import re
import stat
import time
from collections.abc import Callable, Collection, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from dslrify.errors import DslrifyError, OutputExistsError, PhotoError
from dslrify.files import real_path, remove_stale_temporaries
from dslrify.photo import RAW_EXTENSIONS, READ_EXTENSIONS, SUPPORTED_EXTENSIONS
from dslrify.video import VIDEO_FORMATS, is_video

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer

#: ``--ext`` takes any extension dslrify.photo knows (jpg, jpeg, tif, tiff, ...), with or without the dot.
SAME_EXTENSION = "same"


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass
class Plan:
    """The jobs of a batch, the inputs refused before any work, and earlier outputs left out of scans."""

    jobs: list[Job]
    refused: list[PhotoError] = field(default_factory=list)
    earlier_outputs: int = 0


def output_extension(ext: str) -> str | None:
    """``'same'`` -> None (keep each input's); ``'JPEG'``, ``'.tif'`` -> ``'.jpeg'``, ``'.tif'``."""
    if ext.lower() == SAME_EXTENSION:
        return None
    dotted = "." + ext.lower().lstrip(".")
    if dotted not in SUPPORTED_EXTENSIONS:
        names = ", ".join(e.lstrip(".") for e in SUPPORTED_EXTENSIONS)
        raise DslrifyError(f"--ext {ext!r} is not a photo format dslrify writes", f"choose same, {names}")
    return dotted


def check_suffix(suffix: str) -> None:
    """A suffix is part of a file name: no folder separators, no NUL."""
    separators = {"/", os.sep, os.altsep or "/", "\0"}
    if any(s in suffix for s in separators):
        raise DslrifyError(
            f"--suffix {suffix!r} contains a folder separator", "use -o to choose the output folder"
        )


def check_output(src: Path, dst: Path, overwrite: bool, inputs: Collection[Path] = ()) -> None:
    """Refuse an output that would replace ``src`` or one of ``inputs`` (whatever ``overwrite`` says),
    and an existing output unless ``overwrite``."""
    target = _real(dst)
    for other in (src, *inputs):
        if target == _real(other) or (os.path.lexists(dst) and _same_file(dst, other)):
            which = "its input" if other == src else f"{other}, an input of this batch"
            raise PhotoError(
                f"{dst}: the output of {src} would replace {which}",
                "give -o a different folder, or a --suffix that no input name ends with",
            )
    if os.path.lexists(dst) and not overwrite:
        raise OutputExistsError(f"{dst} already exists", "pass overwrite=True to replace it")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_input(path: PurePath) -> bool:
    """A photo, a RAW or a video clip dslrify reads, by its name (hidden files left out)."""
    ext = path.suffix.lower()
    return (ext in READ_EXTENSIONS or ext in VIDEO_FORMATS) and not path.name.startswith(".")


def _not_a_file(path: Path) -> PhotoError | None:
    """Why ``path`` (which exists as a directory entry, and is no folder) cannot be a photo, or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if os.path.islink(path):
            loop = e.errno == errno.ELOOP
            target = "a symbolic link loop" if loop else f"a symbolic link to {os.readlink(path)}"
            kind = target if loop else f"{target}, which is missing"
            return PhotoError(f"{path}: {kind}", "name the photo file itself")
        return PhotoError(f"{path}: {e.strerror or e}", "check the path")
    if stat.S_ISREG(mode):
        return None
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
    return PhotoError(f"{path}: {kind}, not a photo file", "name the photo file itself")


class _Collector:
    """Photos found for a batch as ``(photo, base folder)``; ``--recursive`` mirrors relative to the base."""

    def __init__(self, recursive: bool, suffix: str) -> None:
        self.recursive, self.suffix = recursive, suffix
        self.found: list[tuple[Path, Path]] = []
        self.refused: list[PhotoError] = []
        self.earlier_outputs = 0

    def scanned(self, paths: Iterable[Path], base: Path) -> int:
        """Add the photos among ``paths`` (from a folder or a pattern); returns how many, outputs included."""
        photos = sorted(p for p in paths if is_input(p) and p.is_file())
        for p in photos:
            if self.suffix and p.stem.endswith(self.suffix):
                self.earlier_outputs += 1
            else:
                self.found.append((p, base if p.is_relative_to(base) else p.parent))
        return len(photos)

    def add(self, item: str) -> None:
        path = Path(item).expanduser()
        if path.is_dir():
            if not self.scanned(path.glob("**/*" if self.recursive else "*"), path):
                kinds = ", ".join([*SUPPORTED_EXTENSIONS, *VIDEO_FORMATS]) + " and camera RAW/DNG files"
                where = " or its subfolders" if self.recursive else " (use --recursive for subfolders)"
                raise PhotoError(f"{path}: no photos in this folder{where}", f"looked for {kinds}")
        elif os.path.lexists(path):
            problem = _not_a_file(path)
            if problem is None:
                self.found.append((path, path.parent))
            else:
                self.refused.append(problem)
        elif glob.has_magic(item):
            expanded = os.path.expanduser(item)
            # "**" matches any depth of subfolders, as in a shell with globstar.
            matches = [Path(m) for m in glob.glob(expanded, recursive=True)]
            # Mirror relative to the folder part before the first wildcard: "photos/**/*.jpg" -> photos.
            prefix = re.split(r"[*?\[]", expanded, maxsplit=1)[0]
            base = Path(prefix) if prefix.endswith(("/", os.sep)) else Path(prefix).parent
            if not self.scanned(matches, base):
                raise PhotoError(f"{item}: the pattern matches no photos")
        else:
            raise PhotoError(f"{item}: no such file or folder", "check the path")


def collect_inputs(inputs: Iterable[str], *, recursive: bool, suffix: str) -> _Collector:
    """The photos named by ``inputs`` (files, folders, globs) as ``found`` ``(photo, base folder)`` pairs,
    with the ``refused`` inputs and the count of ``earlier_outputs`` left out of scans."""
    collector = _Collector(recursive, suffix)
    for item in inputs:
        collector.add(item)
    return collector


def output_name(src: PurePath, suffix: str, new_ext: str | None) -> str:
    """The naming rule: ``STEM + suffix + ext``, ext from :func:`output_extension` (None: the input's).

    A RAW or DNG input is read only, so keeping its format gives a JPEG; a video keeps its container.
    """
    same = ".jpg" if src.suffix.lower() in RAW_EXTENSIONS else src.suffix
    return f"{src.stem}{suffix}{(None if is_video(src) else new_ext) or same}"


def collision_advice(
    a: tuple[PurePath, PurePath], b: tuple[PurePath, PurePath], out_dir: PurePath | None, recursive: bool
) -> str:
    """What would actually separate two inputs that map to one output name."""
    (src_a, base_a), (src_b, base_b) = a, b
    if src_a.parent == src_b.parent:
        return "leave out --ext so that each output keeps its input's format, or rename one of them"
    if not recursive and base_a == base_b:
        return "add --recursive to mirror the subfolders in -o"
    if out_dir is not None:
        return "leave out -o to write each output beside its input, or run them separately"
    return "run them separately with different -o folders"


def plan_jobs(
    inputs: list[str],
    out_dir: str | os.PathLike | None = None,
    *,
    suffix: str = "_dslr",
    ext: str = SAME_EXTENSION,
    recursive: bool = False,
) -> Plan:
    """The job list for ``dslrify enhance``. See the module docstring for the naming rule."""
    new_ext = output_extension(ext)
    check_suffix(suffix)
    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise DslrifyError(f"-o {out}: exists and is not a folder", "-o takes a folder; it is made if needed")
    collector = collect_inputs(inputs, recursive=recursive, suffix=suffix)
    unique: dict[str, tuple[Path, Path]] = {}
    for src, base in collector.found:
        unique.setdefault(_real(src), (src, base))
    jobs, origin = [], {}
    for src, base in unique.values():
        name = output_name(src, suffix, new_ext)
        if out is None:
            dst = src.parent / name
        elif recursive:
            dst = out / src.parent.relative_to(base) / name
        else:
            dst = out / name
        jobs.append(Job(src, dst))
        origin[src] = (src, base)
    sources = [job.src for job in jobs]
    seen: dict[str, Job] = {}
    for job in jobs:
        # Existing outputs are the run's business (skipped, or replaced with overwrite); inputs never are.
        check_output(job.src, job.dst, overwrite=True, inputs=sources)
        key = _real(job.dst)
        if key in seen:
            first = seen[key]
            raise DslrifyError(
                f"{first.src} and {job.src} would both be written to {job.dst}",
                collision_advice(origin[first.src], origin[job.src], out, recursive),
            )
        seen[key] = job
    jobs.sort(key=lambda job: is_video(job.src))  # photos first, then videos: the order they run in
    return Plan(jobs, collector.refused, collector.earlier_outputs)


def make_output_dirs(jobs: list[Job]) -> list[Path]:
    """Create every output folder up front, so an unwritable destination fails before any work.

    Returns the folders this call created (deepest last), for :func:`remove_empty_dirs`.
    """
    created: list[Path] = []
    for folder in sorted({job.dst.parent for job in jobs}):
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DslrifyError(
                f"cannot create output folder {folder}: {e.strerror or e}", "choose a writable folder with -o"
            ) from e
        created.extend(reversed(missing))
        if not os.access(folder, os.W_OK):
            raise DslrifyError(f"output folder {folder} is not writable", "choose a writable folder with -o")
    return created


def remove_empty_dirs(folders: list[Path]) -> None:
    """Remove those of ``folders`` (made by :func:`make_output_dirs`) that are still empty, deepest first."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty (something was written) or gone: leave it
            folder.rmdir()


@dataclass
class BatchReport:
    """What a batch did. ``interrupted``: stopped by Ctrl+C or SIGTERM; ``done`` lists finished outputs."""

    total: int
    done: list[Job] = field(default_factory=list)
    skipped: list[OutputExistsError] = field(default_factory=list)
    failed: list[DslrifyError] = field(default_factory=list)
    earlier_outputs: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        """One line: ``3 done, 1 skipped, 0 failed in 2.1 s`` (+ earlier outputs left out, interruption)."""
        line = f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
        if self.interrupted:
            line = f"interrupted: {line}, {self.total - self.finished} not started or not finished"
        line += f" in {self.seconds:.1f} s"
        if self.earlier_outputs:
            line += f"; left out {self.earlier_outputs} earlier output(s) whose names end with the suffix"
        return line

    @property
    def finished(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (a skipped existing output is no failure), 1 otherwise, 130 if stopped."""
        return 130 if self.interrupted else int(bool(self.failed))


OnResult = Callable[[Job | None, DslrifyError | None], None]
OnFrame = Callable[[Job, int, "int | None"], None]  # a video job, frames done, frames expected


def _results(
    enhancer: Enhancer,
    jobs: list[Job],
    quality: int,
    overwrite: bool,
    crf: int | None,
    codec: str | None,
    on_frame: OnFrame | None,
) -> Generator[tuple[Path, Path, BaseException | None], None, None]:
    """Photos through the enhancer's overlapped pipeline, then each video (itself a pipeline)."""
    photos = [(job.src, job.dst) for job in jobs if not is_video(job.src)]
    yield from enhancer.enhance_files(photos, quality=quality, overwrite=overwrite)
    for job in (job for job in jobs if is_video(job.src)):
        progress = None if on_frame is None else functools.partial(on_frame, job)
        try:
            enhancer.enhance_video(
                job.src, job.dst, crf=crf, codec=codec, overwrite=overwrite, on_frame=progress
            )
        except DslrifyError as e:
            yield job.src, job.dst, e
        else:
            yield job.src, job.dst, None


def run_batch(
    enhancer: Enhancer,
    plan: Plan,
    *,
    quality: int = 95,
    overwrite: bool = False,
    on_result: OnResult | None = None,
    crf: int | None = None,
    codec: str | None = None,
    on_frame: OnFrame | None = None,
) -> BatchReport:
    """Run ``plan`` through ``enhancer``; ``on_result(job, error)`` after each input (job None: refused).

    Videos are encoded with ``codec`` at quality ``crf`` (None: the defaults of :mod:`dslrify.video`);
    ``on_frame(job, done, expected)`` reports each enhanced frame.

    A KeyboardInterrupt stops the batch cleanly: writes in flight complete (each output is whole or
    absent), output folders left empty are removed, and the report says what was finished.
    """
    report = BatchReport(len(plan.jobs) + len(plan.refused), earlier_outputs=plan.earlier_outputs)
    notify = on_result or (lambda job, error: None)
    for problem in plan.refused:
        report.failed.append(problem)
        notify(None, problem)
    start, wall_start = time.perf_counter(), time.time()
    created = make_output_dirs(plan.jobs)
    for folder in {job.dst.parent for job in plan.jobs}:
        if folder.is_dir():  # temporaries of killed earlier runs go, even when nothing is left to write
            remove_stale_temporaries(folder)
    by_src = {job.src: job for job in plan.jobs}
    results = _results(enhancer, plan.jobs, quality, overwrite, crf, codec, on_frame)
    reported: set[Path] = set()
    try:
        for src, _, error in results:  # errors here are DslrifyErrors: anything else is a bug and propagates
            job = by_src[src]
            reported.add(src)
            if error is None:
                report.done.append(job)
            elif isinstance(error, OutputExistsError):
                report.skipped.append(error)
            elif isinstance(error, DslrifyError):
                report.failed.append(error)
            else:
                raise error
            notify(job, error)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        results.close()  # waits for the write in flight, so its output is complete before we look
        if report.interrupted:
            for job in plan.jobs:
                late = job.src not in reported and job.dst.exists() and job.dst.stat().st_mtime >= wall_start
                if late:  # written while stopping, after its result could be reported
                    report.done.append(job)
        report.seconds = time.perf_counter() - start
        remove_empty_dirs(created)
    return report


def _real(path: Path) -> str:
    """The path with every symlink resolved, as a comparable string; never raises on a loop."""
    return str(real_path(path))
