"""Where a Ray job's photos live: local paths, or any filesystem pyarrow opens from a URI.

A path without a scheme (or a ``file://`` URI) is local: read with ``open`` and written through
``photo.write_photo``, hence ``files.atomic_path`` (a temporary beside the output, fsync, rename). On a
cluster of several machines a local folder must be shared by all of them (NFS and the like).

``s3://``, ``gs://``, ``hdfs://`` and the other URIs go through ``pyarrow.fs``. How an output appears
whole there, and never replaces an existing one:

* Object stores (S3, GCS, Azure) have no rename. The photo is encoded in memory and written in one
  ``write`` to a stream that pyarrow turns into one object when it is closed, after every part has been
  uploaded (S3: a multipart upload completed on close; GCS: a resumable upload finalised on close). A
  worker killed before that leaves no object, so an object under an output name is always complete.
  (S3 keeps the unfinished multipart upload, invisible and billed, until a lifecycle rule with
  ``AbortIncompleteMultipartUpload`` removes it.)
* Never overwrite: pyarrow 26 offers no conditional put (S3's ``If-None-Match: *``, GCS's
  ``ifGenerationMatch=0``), so a worker looks the key up just before the put and refuses an existing
  one. Between that look-up and the end of the put (one photo's upload) another writer of the same key
  would be replaced by ours; within a job each output has one input, and a photo is retried only after
  the worker that had it has died, so only a second, concurrent job could do that.
* Filesystems with a rename (HDFS, and pyarrow's local or wrapped filesystems) show a file while it is
  written, so there the photo goes to a hidden temporary ``.dslrify-job-<job>-<hex>.tmp`` beside the
  output and is then moved onto its name; the temporaries of a job's killed workers are removed when
  the job ends (:func:`remove_job_temporaries`).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow.fs as pafs

from dslrify.errors import OutputExistsError, PhotoError

#: pyarrow filesystems that store whole objects and have no rename (their ``type_name``).
OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
_JOB_TEMPORARY = ".dslrify-job-{job}-"


@dataclass(frozen=True)
class Location:
    """One path of a job. ``fs`` None: the local filesystem (``path`` is an OS path).

    Compared by ``text`` and ``path`` (pyarrow filesystems are not hashable; ``text`` carries the scheme).
    """

    text: str  # as the user gave it (or built from it): in messages and the manifest
    fs: pafs.FileSystem | None = field(compare=False)
    path: str  # the path on ``fs``

    @property
    def local(self) -> bool:
        return self.fs is None

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name if self.fs is not None else Path(self.path).name


def is_uri(text: str) -> bool:
    """``scheme://...`` (a Windows drive such as ``C:\\`` is no scheme)."""
    scheme = urlsplit(text).scheme
    return len(scheme) > 1 and text.startswith(f"{scheme}://")


def locate(text: str, filesystem: pafs.FileSystem | None = None) -> Location:
    """Where ``text`` lives: on ``filesystem`` when one is given, else local or from the URI's scheme."""
    if filesystem is not None:
        return Location(text, filesystem, text)
    if not is_uri(text):
        return Location(text, None, os.fspath(Path(text).expanduser()))
    parts = urlsplit(text)
    if parts.scheme == "file":
        return Location(text, None, unquote(parts.path))
    fs, root = _filesystem(f"{parts.scheme}://{parts.netloc}")
    path = unquote(parts.path).rstrip("/")  # pyarrow names folders (key prefixes) without the slash
    return Location(text, fs, f"{root.rstrip('/')}{path}" if root else path)


@functools.cache
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """One pyarrow filesystem per ``scheme://host`` and process (S3 looks the bucket's region up once)."""
    try:
        return pafs.FileSystem.from_uri(root)
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) for unknown schemes
        raise PhotoError(
            f"{root}: pyarrow cannot open this filesystem ({e})",
            "use a local path, s3://, gs:// or hdfs://, with the filesystem's credentials set",
        ) from e


def child(folder: Location, relative: str) -> Location:
    """``folder / relative`` on the same filesystem (``relative`` uses ``/``)."""
    if not relative:
        return folder
    if folder.fs is None:
        return Location(os.path.join(folder.text, relative), None, os.path.join(folder.path, relative))
    return Location(
        f"{folder.text.rstrip('/')}/{relative}", folder.fs, f"{folder.path.rstrip('/')}/{relative}"
    )


def parent(loc: Location) -> Location:
    """The folder holding ``loc``."""
    if loc.fs is None:
        return Location(os.path.dirname(loc.text) or ".", None, os.path.dirname(loc.path) or ".")
    text, path = loc.text.rstrip("/"), loc.path.rstrip("/")
    return Location(text.rsplit("/", 1)[0], loc.fs, path.rsplit("/", 1)[0] if "/" in path else "")


def read_bytes(loc: Location) -> bytes:
    """The whole file. OSError (pyarrow's too) is the caller's to report."""
    if loc.fs is None:
        return Path(loc.path).read_bytes()
    with loc.fs.open_input_stream(loc.path) as f:
        return bytes(f.readall())


def exists(loc: Location) -> bool:
    if loc.fs is None:
        return os.path.lexists(loc.path)
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def existing(locations: Iterable[Location]) -> set[Location]:
    """Those of ``locations`` that exist, by listing each folder once (an object store's LIST returns
    1000 keys a request, where one HEAD per output would cost a request each)."""
    by_folder: dict[Location, list[Location]] = defaultdict(list)
    for loc in locations:
        by_folder[parent(loc)].append(loc)
    found: set[Location] = set()
    for folder, members in by_folder.items():
        present = set(_names(folder))
        found.update(loc for loc in members if loc.name in present)
    return found


def _names(folder: Location) -> list[str]:
    """The entry names in ``folder`` (none when it is missing)."""
    if folder.fs is None:
        try:
            return os.listdir(folder.path)
        except (FileNotFoundError, NotADirectoryError):
            return []
    selector = pafs.FileSelector(folder.path, allow_not_found=True)
    return [PurePosixPath(info.path).name for info in folder.fs.get_file_info(selector)]


def make_folder(folder: Location) -> None:
    """Create an output folder (object stores have none: nothing to do there)."""
    if folder.fs is None:
        Path(folder.path).mkdir(parents=True, exist_ok=True)
    elif folder.fs.type_name not in OBJECT_STORES:
        folder.fs.create_dir(folder.path, recursive=True)


def put_new(loc: Location, data: bytes, job: str, *, object_store: bool | None = None) -> None:
    """Store ``data`` under ``loc`` (a pyarrow filesystem) whole, refusing an existing object.

    ``object_store``: whether ``loc.fs`` keeps whole objects (default: from its type), see the module
    docstring for both ways. ``job`` names this job's temporaries on filesystems with a rename.
    """
    assert loc.fs is not None, "local outputs are written by photo.write_photo"
    if exists(loc):
        raise OutputExistsError(f"{loc.text} already exists", "a Ray job never replaces an output")
    whole = loc.fs.type_name in OBJECT_STORES if object_store is None else object_store
    try:
        if whole:
            with loc.fs.open_output_stream(loc.path, compression=None) as f:
                f.write(data)  # one write of the complete photo; the object appears on close
            return
        tmp = f"{parent(loc).path}/{_JOB_TEMPORARY.format(job=job)}{secrets.token_hex(4)}.tmp"
        try:
            with loc.fs.open_output_stream(tmp, compression=None) as f:
                f.write(data)
            loc.fs.move(tmp, loc.path)
        finally:
            if loc.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                loc.fs.delete_file(tmp)
    except OSError as e:
        raise PhotoError(
            f"cannot write {loc.text}: {e}", "check the output location and its credentials"
        ) from e


def remove_job_temporaries(folders: Iterable[Location], job: str) -> int:
    """Delete the temporaries that ``job``'s killed workers left in ``folders`` (pyarrow filesystems
    with a rename); returns how many. Local folders are cleaned by ``files.remove_stale_temporaries``."""
    prefix, removed = _JOB_TEMPORARY.format(job=job), 0
    for folder in folders:
        if folder.fs is None or folder.fs.type_name in OBJECT_STORES:
            continue
        for name in _names(folder):
            if name.startswith(prefix) and name.endswith(".tmp"):
                folder.fs.delete_file(f"{folder.path.rstrip('/')}/{name}")
                removed += 1
    return removed


def read_photos(batch: dict[str, np.ndarray], filesystem: pafs.FileSystem | None) -> dict[str, list[Any]]:
    """A Ray Data task: add each input's bytes (``data``), or why it could not be read (``read_error``).

    Here rather than beside the actor so that read tasks never import torch.
    """
    data: list[bytes] = []
    errors: list[str] = []
    for src in batch["src"]:
        try:
            data.append(read_bytes(locate(str(src), filesystem)))
            errors.append("")
        except (OSError, ValueError) as e:  # the worker reports it in the manifest; the job goes on
            data.append(b"")  # (pyarrow raises ArrowInvalid, a ValueError, for a malformed path)
            errors.append(f"{src}: cannot be read ({getattr(e, 'strerror', None) or e})")
    return {"src": list(batch["src"]), "dst": list(batch["dst"]), "data": data, "read_error": errors}
