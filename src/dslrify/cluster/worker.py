"""The two stages a Ray job runs: reading bytes (tasks), and decode → enhance → encode → write (actors).

Reading is plain I/O, so it runs as small tasks with a fraction of a CPU; the work that needs the model
runs in a pool of :class:`EnhanceWorker` actors, each of which loads the model once. Both exchange
batches as ``{column: values}``; every photo comes back as one row of the manifest (:data:`COLUMNS`).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.fs as pafs

from dslrify.cluster.storage import exists, locate, put_new
from dslrify.errors import DslrifyError, OutputExistsError, PhotoError
from dslrify.models import EnhancementModel
from dslrify.photo import DEFAULT_MAX_PIXELS, encode_photo, read_photo_bytes, write_photo

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer

#: One row per photo: the manifest's fields (``src``/``dst`` become ``input``/``output`` there).
COLUMNS = ("src", "dst", "status", "error", "seconds", "worker")
#: A worker's result for a photo: done, skipped (its output existed), failed (a DslrifyError, which
#: does not stop the job) or crashed (anything else: a bug, which the driver raises).
DONE, SKIPPED, FAILED, CRASHED = "done", "skipped", "failed", "crashed"


@dataclass(frozen=True)
class WorkerSettings:
    """What every actor needs: the Enhancer's options, the output quality, and where files live."""

    model: str | EnhancementModel
    device: str = "cpu"
    threads: int = 1
    tile: int | None = None
    strength: float = 1.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    half: bool = False
    allow_truncated: bool = False
    raw_wb: str = "camera"
    quality: int = 95
    filesystem: pafs.FileSystem | None = None
    job: str = "job"  # names this job's temporaries (storage.put_new)

    def enhancer(self, on_driver: bool = False) -> Enhancer:
        """The Enhancer these settings describe. ``on_driver``: made only to check them, on the driver's
        CPU, leaving the thread count and half precision (the workers' device) to the workers."""
        from dslrify.enhancer import Enhancer  # torch loads in the actor, not where the job is planned

        return Enhancer(
            self.model,
            device="cpu" if on_driver else self.device,
            tile=self.tile,
            strength=self.strength,
            threads=None if on_driver else self.threads,
            max_pixels=self.max_pixels,
            half=False if on_driver else self.half,
            allow_truncated=self.allow_truncated,
            raw_wb=self.raw_wb,
        )


class EnhanceWorker:
    """A Ray Data actor: loads the model once, then decodes, enhances, encodes and writes its photos.

    An output that exists when its photo comes up was written by an earlier try of this job (the
    driver leaves out outputs that existed before it started): the photo is done and is not redone,
    so that a retried batch writes nothing twice.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.enhancer = settings.enhancer()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = [
            self.enhance(str(src), str(dst), bytes(data), str(read_error))
            for src, dst, data, read_error in zip(
                batch["src"], batch["dst"], batch["data"], batch["read_error"], strict=True
            )
        ]
        return {column: [row[column] for row in rows] for column in COLUMNS}

    def enhance(self, src: str, dst: str, data: bytes, read_error: str) -> dict[str, Any]:
        """One photo → one manifest row."""
        start = time.perf_counter()
        status, error = DONE, ""
        try:
            if read_error:
                raise PhotoError(read_error, "check that the file exists and may be read")
            self._write(src, dst, data)
        except OutputExistsError as e:
            status, error = SKIPPED, str(e)
        except DslrifyError as e:
            status, error = FAILED, str(e)
        except Exception:  # a bug: carried to the driver, which stops the job with it (see pipeline)
            status, error = CRASHED, traceback.format_exc()
        seconds = round(time.perf_counter() - start, 4)
        return {
            "src": src,
            "dst": dst,
            "status": status,
            "error": error,
            "seconds": seconds,
            "worker": self.name,
        }

    def _write(self, src: str, dst: str, data: bytes) -> None:
        settings = self.settings
        out = locate(dst, settings.filesystem)
        if exists(out):
            return  # written by an earlier try of this job (see the class docstring)
        photo = read_photo_bytes(
            data, src, settings.max_pixels, allow_truncated=settings.allow_truncated, raw_wb=settings.raw_wb
        )
        pixels = self.enhancer.enhance_pixels(photo.pixels)
        if out.local:
            write_photo(out.path, photo, pixels, quality=settings.quality)  # files.atomic_path
        else:
            put_new(out, encode_photo(photo, pixels, name=out.path, quality=settings.quality), settings.job)
