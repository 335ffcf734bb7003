"""From what a user typed (files, folders, globs) to a list of (input, output) jobs.

Naming rule: ``OUT_DIR / [mirrored subfolders /] STEM + suffix + ext``. Without ``out_dir`` outputs go
beside their inputs. An input is never its own output. ``--ext same`` keeps the input's extension, but
a RAW or DNG input (read only) gives ``.jpg``.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dslrify.errors import DslrifyError, PhotoError
from dslrify.photo import RAW_EXTENSIONS, READ_EXTENSIONS, SUPPORTED_EXTENSIONS

EXTENSION_CHOICES = {"same": None, "jpg": ".jpg", "png": ".png", "tif": ".tif", "webp": ".webp"}


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def _is_photo(path: Path) -> bool:
    return path.suffix.lower() in READ_EXTENSIONS and not path.name.startswith(".")


def collect_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """Expand files, folders and glob patterns into ``(photo, base folder)`` pairs, in a stable order.

    The base folder is what ``--recursive`` mirrors relative to. Raises PhotoError for a path that
    does not exist, or a folder or pattern with no photos in it.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            found.append((path, path.parent))
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            photos = sorted(p for p in path.glob(pattern) if p.is_file() and _is_photo(p))
            if not photos:
                kinds = ", ".join(sorted(SUPPORTED_EXTENSIONS)) + " and camera RAW/DNG files"
                where = " or its subfolders" if recursive else " (use --recursive for subfolders)"
                raise PhotoError(f"{path}: no photos in this folder{where}", f"looked for {kinds}")
            found.extend((p, path) for p in photos)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=recursive))
            photos = [m for m in matches if m.is_file() and _is_photo(m)]
            if not photos:
                raise PhotoError(f"{item}: the pattern matches no photos")
            # Mirror relative to the folder part before the first wildcard: "photos/**/*.jpg" -> photos.
            expanded = os.path.expanduser(item)
            prefix = re.split(r"[*?\[]", expanded, maxsplit=1)[0]
            base = Path(prefix) if prefix.endswith(("/", os.sep)) else Path(prefix).parent
            found.extend((p, base if p.is_relative_to(base) else p.parent) for p in photos)
        else:
            raise PhotoError(f"{item}: no such file or folder")
    unique: dict[Path, tuple[Path, Path]] = {}
    for src, base in found:
        unique.setdefault(src.resolve(), (src, base))
    return list(unique.values())


def plan_jobs(
    inputs: list[str],
    out_dir: str | os.PathLike | None = None,
    *,
    suffix: str = "_dslr",
    ext: str = "same",
    recursive: bool = False,
) -> list[Job]:
    """The (src, dst) job list for ``dslrify enhance``. See the module docstring for the naming rule."""
    if ext not in EXTENSION_CHOICES:
        raise DslrifyError(f"--ext {ext!r} is not supported", f"choose one of {', '.join(EXTENSION_CHOICES)}")
    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise DslrifyError(
            f"-o {out}: exists and is not a folder", "-o takes a folder; it is created if needed"
        )
    jobs = []
    for src, base in collect_inputs(inputs, recursive):
        new_ext = EXTENSION_CHOICES[ext] or (".jpg" if src.suffix.lower() in RAW_EXTENSIONS else src.suffix)
        name = f"{src.stem}{suffix}{new_ext}"
        if out is None:
            dst = src.parent / name
        elif recursive:
            dst = out / src.parent.relative_to(base) / name
        else:
            dst = out / name
        if dst.resolve() == src.resolve():
            raise DslrifyError(
                f"{src}: the output would replace the input",
                "give -o a different folder, or a non-empty --suffix",
            )
        jobs.append(Job(src, dst))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.dst.resolve()
        if key in seen:
            raise DslrifyError(
                f"{seen[key]} and {job.src} would both be written to {job.dst}",
                "use --recursive to mirror subfolders, or a different --ext",
            )
        seen[key] = job.src
    return jobs


def make_output_dirs(jobs: list[Job]) -> None:
    """Create every output folder up front, so an unwritable destination fails before any work."""
    for folder in sorted({job.dst.parent for job in jobs}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DslrifyError(
                f"cannot create output folder {folder}: {e.strerror or e}", "choose a writable folder with -o"
            ) from e
        if not os.access(folder, os.W_OK):
            raise DslrifyError(f"output folder {folder} is not writable", "choose a writable folder with -o")
