"""A Ray job's inputs → ``(input, output)`` pairs, under the same rules as ``dslrify enhance``.

Local inputs and outputs go through :func:`dslrify.batch.plan_jobs` itself (files, folders, globs,
symbolic links, FIFOs, hard links). Inputs on a pyarrow filesystem (``s3://bucket/photos``) follow the
same rules by name: a folder (a key prefix) holds the photos directly in it, or with ``recursive`` in
its subfolders too, mirrored under the output folder; hidden names are left out, and so are earlier
outputs (names whose stem ends with the suffix); outputs are named ``STEM + suffix + ext``
(:func:`dslrify.batch.output_name`); an input is never an output, and two inputs never share one.
Wildcards work in local paths only (an object store lists prefixes, not patterns).

Clips are refused here: a Ray job enhances photos (a clip is one long sequential job; run
``dslrify enhance`` on it).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from dslrify.batch import (
    check_output,
    check_suffix,
    collect_inputs,
    collision_advice,
    is_input,
    output_extension,
    output_name,
    plan_jobs,
)
from dslrify.cluster.storage import Location, child, locate, parent
from dslrify.errors import DslrifyError, PhotoError
from dslrify.video import is_video

_CLIP_ADVICE = "a Ray job enhances photos; run dslrify enhance (without --ray) on clips"


@dataclass(frozen=True)
class DatasetJob:
    """One photo of a Ray job: where it is read and where its output goes (local paths are absolute)."""

    src: str
    dst: str


@dataclass
class DatasetPlan:
    """The photos of a job, the inputs refused before any work (``(input, why)``), and earlier outputs
    left out of scans."""

    jobs: list[DatasetJob]
    refused: list[tuple[str, PhotoError]] = field(default_factory=list)
    earlier_outputs: int = 0


def plan_dataset(
    inputs: Sequence[str],
    out: str | os.PathLike | None = None,
    *,
    suffix: str = "_dslr",
    ext: str = "same",
    recursive: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> DatasetPlan:
    """The job list of ``dslrify enhance --ray``; ``filesystem``: every path is on it (else: local
    paths, and URIs each on the filesystem of its scheme)."""
    new_ext = output_extension(ext)
    check_suffix(suffix)
    if not inputs:
        raise DslrifyError("no inputs given", "name photos, folders or URIs")
    found = [locate(item, filesystem) for item in inputs]
    out_loc = None if out is None else locate(os.fspath(out), filesystem)
    if all(loc.local for loc in found) and (out_loc is None or out_loc.local):
        out_dir = None if out_loc is None else out_loc.path
        batch = plan_jobs([loc.path for loc in found], out_dir, suffix=suffix, ext=ext, recursive=recursive)
        jobs = [DatasetJob(os.path.abspath(job.src), os.path.abspath(job.dst)) for job in batch.jobs]
        refused = [(_named_input(problem), problem) for problem in batch.refused]
        return _without_clips(DatasetPlan(jobs, refused, batch.earlier_outputs))
    photos: list[tuple[Location, Location]] = []  # (photo, base folder of the mirroring)
    plan = DatasetPlan([])
    local = [loc.path for loc in found if loc.local]
    if local:
        collected = collect_inputs(local, recursive=recursive, suffix=suffix)
        for photo, folder in collected.found:
            photos.append((locate(os.path.abspath(photo)), locate(os.path.abspath(folder))))
        plan.refused += [(_named_input(problem), problem) for problem in collected.refused]
        plan.earlier_outputs += collected.earlier_outputs
    for loc in found:
        if not loc.local:
            plan.earlier_outputs += _scan(loc, recursive, suffix, photos)
    bases: dict[Location, Location] = {}
    for src, base in photos:
        bases.setdefault(src, base)  # a photo named twice is enhanced once, mirrored as first named
    writers: dict[Location, Location] = {}  # output -> its input
    for src, base in bases.items():
        name = output_name(PurePosixPath(src.name), suffix, new_ext)
        if out_loc is None:
            dst = child(parent(src), name)
        elif recursive:
            dst = child(out_loc, "/".join([*_relative(parent(src), base), name]))
        else:
            dst = child(out_loc, name)
        _check_not_input(src, dst, bases)
        if dst in writers:
            first = writers[dst]
            raise DslrifyError(
                f"{first.text} and {src.text} would both be written to {dst.text}",
                collision_advice(
                    (PurePosixPath(first.path), PurePosixPath(bases[first].path)),
                    (PurePosixPath(src.path), PurePosixPath(base.path)),
                    None if out_loc is None else PurePosixPath(out_loc.path),
                    recursive,
                ),
            )
        writers[dst] = src
        plan.jobs.append(DatasetJob(src.text, dst.text))
    return _without_clips(plan)


def _scan(loc: Location, recursive: bool, suffix: str, photos: list[tuple[Location, Location]]) -> int:
    """Add the photos that ``loc`` (a file or folder on a pyarrow filesystem) names to ``photos``;
    returns how many earlier outputs were left out."""
    assert loc.fs is not None
    if glob.has_magic(loc.path):
        raise DslrifyError(
            f"{loc.text}: wildcards work in local paths only",
            "give the folder (with --recursive for subfolders)",
        )
    try:
        info = loc.fs.get_file_info(loc.path)
        if info.type == pafs.FileType.File:
            photos.append((loc, parent(loc)))
            return 0
        if info.type == pafs.FileType.NotFound:
            raise PhotoError(f"{loc.text}: no such file or folder", "check the path")
        listed = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=recursive))
    except OSError as e:
        raise PhotoError(f"{loc.text}: cannot be listed ({e})", "check the URI and the credentials") from e
    root = PurePosixPath(loc.path)
    names = sorted(
        str(PurePosixPath(i.path).relative_to(root))
        for i in listed
        if i.type == pafs.FileType.File and is_input(PurePosixPath(i.path))
    )
    earlier = sum(PurePosixPath(name).stem.endswith(suffix) for name in names) if suffix else 0
    for name in names:
        if not (suffix and PurePosixPath(name).stem.endswith(suffix)):
            photos.append((child(loc, name), loc))
    if not names:
        where = " or its subfolders" if recursive else " (use --recursive for subfolders)"
        raise PhotoError(
            f"{loc.text}: no photos in this folder{where}", "looked for photo and RAW extensions"
        )
    return earlier


def _relative(folder: Location, base: Location) -> list[str]:
    """The parts of ``folder`` below ``base`` (both on one filesystem)."""
    if folder.fs is None:
        relative = os.path.relpath(folder.path, base.path)
        return [] if relative == "." else list(Path(relative).parts)
    return list(PurePosixPath(folder.path).relative_to(PurePosixPath(base.path)).parts)


def _check_not_input(src: Location, dst: Location, sources: Collection[Location]) -> None:
    """An output never replaces an input of the job (local ones compared through their real paths)."""
    if src.local and dst.local:
        check_output(Path(src.path), Path(dst.path), overwrite=True)
    if dst in sources:
        raise PhotoError(
            f"{dst.text}: the output of {src.text} would replace an input of this job",
            "give -o a different folder, or a --suffix that no input name ends with",
        )


def _named_input(problem: PhotoError) -> str:
    """The input a refusal of the batch planner names: its message starts ``PATH: why``."""
    return os.path.abspath(problem.message.split(": ", 1)[0])


def _without_clips(plan: DatasetPlan) -> DatasetPlan:
    """Move clips from the jobs to the refused inputs."""
    clips = [job for job in plan.jobs if is_video(job.src)]
    plan.jobs = [job for job in plan.jobs if not is_video(job.src)]
    plan.refused += [(job.src, PhotoError(f"{job.src}: a video clip", _CLIP_ADVICE)) for job in clips]
    return plan
