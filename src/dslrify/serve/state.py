"""What a running ``dslrify serve`` holds: its temporary folder, the photos by id, and the admitted work.

* Photos live in one temporary folder named ``dslrify-serve-<pid>-<random>``; a server started later
  removes the folders of servers whose process is gone (killed with SIGKILL, say), and nothing else.
* The folder is bounded in bytes (``max_disk_mb``): beyond it the oldest photos not being rendered are
  dropped, so a long session never fills the disk.
* Enhancements are admitted by their memory cost, not by count: a 7000 x 7000 photo costs as much as
  ~50 phone photos. Work beyond the budget gets 503 at once (the page retries); one photo is always
  admitted when nothing else runs, so the budget never locks a photo out that fits ``max_pixels``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslrify.enhancer import Enhancer, available_memory, pick_device
from dslrify.errors import DslrifyError
from dslrify.photo import PhotoInfo
from dslrify.zoo import MODELS, is_checkpoint_dir

_ID = re.compile(r"^[A-Za-z0-9_-]{8,40}$")
FOLDER_PREFIX = "dslrify-serve-"
_FOLDER = re.compile(rf"^{FOLDER_PREFIX}(\d+)-[A-Za-z0-9_]+$")
# The result keeps the source's format; browsers cannot show TIFF/HEIF, so those get JPEG copies to view.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "HEIF": ".heic"}
# Memory one enhancement takes, an upper estimate: 48 bytes per pixel (decoded photo, float input and
# output, previews, encoder buffers) plus 256 MB. A 7000 x 7000 photo, reckoned at 2.6 GB, was measured
# at 2.2-2.4 GB of peak RSS on the CPU (the Enhancer tiles, so the model's share stays bounded).
BYTES_PER_PIXEL = 48
WORKING_SET = 256 * 1024**2


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "advice": advice}`` with an HTTP status."""

    def __init__(
        self, status: int, message: str, advice: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.advice, self.headers = status, message, advice, headers


def work_cost(pixels: int) -> int:
    """Bytes of memory that enhancing a photo of ``pixels`` pixels takes (an upper estimate)."""
    return WORKING_SET + BYTES_PER_PIXEL * pixels


@dataclass
class Item:
    """One uploaded photo: its folder, its name as uploaded, its upright size, and its last result."""

    id: str
    folder: Path
    name: str
    format: str
    width: int  # upright: the EXIF orientation applied, as the page shows it
    height: int
    size: int  # bytes of the upload
    original: Path
    result: Path | None = None
    model: str | None = None
    strength: float | None = None
    version: int = 0  # bumped per render: the page appends it to URLs so browsers never show a stale one
    disk: int = 0  # bytes its folder holds
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^\w.-]+", "_", Path(self.name).stem).strip("._") or "photo"
        return f"{stem[:80]}_dslr{EXTENSIONS[self.format]}"

    def rendered(self, model: str, strength: float) -> None:
        """Record a finished render (its files are in place): new version, new size on disk."""
        self.result = self.folder / f"result{EXTENSIONS[self.format]}"
        self.model, self.strength, self.version = model, strength, self.version + 1
        self.measure()

    def measure(self) -> int:
        """Bytes on disk now (upload, result, previews), remembered in ``disk``."""
        self.disk = sum(p.stat().st_size for p in self.folder.glob("*") if p.is_file())
        return self.disk

    def public(self) -> dict[str, Any]:
        """What the page needs to show and fetch this photo."""
        v = self.version
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
            "enhanced": self.result is not None,
        }
        if self.result is not None:
            out.update(
                model=self.model,
                strength=self.strength,
                version=v,
                download=f"/api/result/{self.id}?v={v}",
                download_name=self.download_name,
                preview={k: f"/api/image/{self.id}/{k}?v={v}" for k in ("original", "result")},
                full={k: f"/api/image/{self.id}/{k}?size=full&v={v}" for k in ("original", "result")},
            )
        return out


@dataclass
class Admission:
    """Enhancements running or waiting, bounded by their summed memory cost and by count."""

    budget: int  # bytes
    max_count: int
    used: int = 0
    count: int = 0

    def admit(self, cost: int) -> bool:
        """Take ``cost`` bytes if they fit (always when nothing is admitted); False when they do not."""
        if self.count and (self.used + cost > self.budget or self.count >= self.max_count):
            return False
        self.used += cost
        self.count += 1
        return True

    def release(self, cost: int) -> None:
        self.used -= cost
        self.count -= 1


def remove_dead_servers(parent: Path) -> list[Path]:
    """Delete ``dslrify-serve-<pid>-*`` folders in ``parent`` whose process is gone; returns them."""
    removed = []
    for folder in parent.glob(f"{FOLDER_PREFIX}*"):
        found = _FOLDER.match(folder.name)
        if not found or not folder.is_dir() or folder.is_symlink() or _alive(int(found[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True


class ServeState:
    """Everything the app holds: temp folder, photos by id, Enhancers by model, pools and budgets."""

    def __init__(
        self,
        model: str,
        max_upload_mb: float,
        max_pixels: int,
        workers: int,
        queue: int,
        workdir: str | Path | None,
        device: str,
        max_memory_mb: float | None = None,
        max_disk_mb: float = 4096,
    ) -> None:
        if workers < 1 or queue < 0:
            raise DslrifyError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        if max_disk_mb < max_upload_mb:
            raise DslrifyError(
                f"max_disk_mb ({max_disk_mb:g}) is smaller than max_upload_mb ({max_upload_mb:g})",
                "give the temporary folder room for at least one upload",
            )
        self.default_model = model
        self.max_upload_mb = max_upload_mb
        self.max_upload_bytes = int(max_upload_mb * 1024**2)
        self.max_pixels = max_pixels
        self.max_disk_bytes = int(max_disk_mb * 1024**2)
        self.workers, self.device = workers, device
        if max_memory_mb is None:  # half of what this machine has free now
            budget = available_memory(pick_device("cpu")) // 2
        else:
            budget = int(max_memory_mb * 1024**2)
        self.admission = Admission(budget, workers + queue)  # touched only on the event loop
        parent = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        remove_dead_servers(parent)
        self.tmp = tempfile.TemporaryDirectory(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=parent)
        self.root = Path(self.tmp.name)
        self.items: OrderedDict[str, Item] = OrderedDict()
        self.enhancers: dict[str, Enhancer] = {}
        self._enhancer_lock = threading.Lock()
        # Model work: ``workers`` threads; light work (header checks, previews, zips): its own two
        # threads, so a download or an upload check never waits behind a long enhancement.
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dslrify-enhance")
        self.light = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dslrify-io")

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[dict[str, str]]:
        """Shipped models whose weights are installed, plus the server's model if it is a folder."""
        shipped = [e for e in MODELS.values() if is_checkpoint_dir(e.path)]
        out = [{"name": e.name, "description": e.description} for e in shipped]
        if self.default_model not in MODELS:
            out.append({"name": self.default_model, "description": "checkpoint given to dslrify serve"})
        return out

    def check_model(self, name: str) -> str:
        if name not in {m["name"] for m in self.models()}:
            raise ApiError(
                400,
                f"unknown model {name!r}",
                f"choose one of {', '.join(m['name'] for m in self.models())} (GET /api/models)",
            )
        return name

    def enhancer(self, name: str) -> Enhancer:
        """The cached Enhancer for ``name`` (built once, in a worker thread, as loading takes time)."""
        with self._enhancer_lock:
            if name not in self.enhancers:
                self.enhancers[name] = Enhancer(name, device=self.device, max_pixels=self.max_pixels)
            return self.enhancers[name]

    # -- photos ---------------------------------------------------------------------------------
    def get(self, photo_id: str) -> Item:
        item = self.items.get(photo_id) if _ID.match(photo_id) else None
        if item is None:
            raise ApiError(
                404, f"no photo with id {photo_id!r}", "upload it again (the server may have restarted)"
            )
        return item

    def new_folder(self) -> Path:
        """A fresh folder for one upload, named by a new random id."""
        folder = self.root / secrets.token_urlsafe(12)
        folder.mkdir()
        return folder

    def add_upload(self, folder: Path, raw: Path, name: str, info: PhotoInfo) -> Item:
        """Keep a checked upload as a new Item (its id is its folder's name)."""
        original = raw.rename(folder / f"original{EXTENSIONS[info.format]}")  # read_photo wants it
        size = original.stat().st_size
        item = Item(folder.name, folder, name, info.format, info.width, info.height, size, original)
        item.measure()
        self.items[item.id] = item
        self.fit_disk(keep=item)
        return item

    @contextlib.contextmanager
    def admitted(self, item: Item) -> Iterator[None]:
        """Hold ``item``'s memory cost while the block runs; 503 (busy) when it does not fit now."""
        cost = work_cost(item.width * item.height)
        if not self.admission.admit(cost):
            raise ApiError(
                503,
                f"the server is busy: {self.admission.count} photos are being enhanced or queued",
                "try again in a few seconds",
                headers={"Retry-After": "5"},
            )
        try:
            yield
        finally:
            self.admission.release(cost)

    def forget(self, item: Item) -> None:
        self.items.pop(item.id, None)
        shutil.rmtree(item.folder, ignore_errors=True)

    def disk_used(self) -> int:
        return sum(item.disk for item in self.items.values())

    def fit_disk(self, keep: Item | None = None) -> None:
        """Drop the oldest photos not being rendered until the folder is within ``max_disk_mb``.

        ``keep`` (the photo just uploaded or rendered) stays, so its answer's URLs work.
        """
        for item in list(self.items.values()):
            if self.disk_used() <= self.max_disk_bytes:
                return
            if item is not keep and not item.lock.locked():
                self.forget(item)

    def close(self) -> None:
        """Stop the pools (dropping queued work) and delete the temporary folder."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.light.shutdown(wait=True, cancel_futures=True)
        self.enhancers.clear()
        self.tmp.cleanup()
