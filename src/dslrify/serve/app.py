"""The FastAPI app behind ``dslrify serve``: upload once, enhance (and re-enhance) by id, download.

Design, and why:

* Uploads are streamed to disk (raw body or multipart) and cut off at ``max_upload_mb`` with 413, so a
  huge upload never sits in memory nor fills the disk; the photo's header is checked right away (format,
  pixel count) so a wrong file gets a 400 with a message before any work is queued.
* The original stays in the server's temporary folder under a random id: changing the model or the
  strength re-renders with ``POST /api/enhance/{id}`` without uploading again.
* Enhancement is CPU/GPU work: it runs in a ThreadPoolExecutor of ``workers`` threads, off the event loop.
  At most ``workers + queue`` enhancements are admitted at once; beyond that the answer is 503 with a
  JSON message (the page retries), so a burst of requests cannot pile up unbounded memory.
* One ``Enhancer`` per model, built on first use and cached (weights load once). Strength is applied
  here, not through ``Enhancer.strength``, because one cached Enhancer is shared by all requests.
* Nothing is written outside one ``tempfile.TemporaryDirectory``, removed when the app shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from dslrify.enhancer import Enhancer
from dslrify.errors import DslrifyError, PhotoError
from dslrify.photo import _READ_FORMATS, _heif_available, read_photo, write_photo
from dslrify.zoo import MODELS, is_checkpoint_dir

STATIC_DIR = Path(__file__).parent / "static"
# A server default well below read_photo's 200 MP: one 50 MP photo is already ~600 MB as float32.
DEFAULT_SERVE_MAX_PIXELS = 50_000_000
PREVIEW_SIDE = 1600  # long side of the screen-size previews, in pixels
CHUNK = 1 << 20
MAX_ITEMS = 500  # photos kept per server; the oldest are dropped beyond this (bounded disk use)
_ID = re.compile(r"^[A-Za-z0-9_-]{8,40}$")
# The result keeps the source's format; browsers cannot show TIFF/HEIF, so those get JPEG copies to view.
_EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "HEIF": ".heic"}
_BROWSER_FORMATS = {"JPEG", "PNG", "WEBP"}


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, "advice": advice}`` with an HTTP status."""

    def __init__(
        self, status: int, message: str, advice: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.advice, self.headers = status, message, advice, headers


class _TooLarge(Exception):
    """Raised from inside the upload stream when the byte limit is passed."""


class EnhanceRequest(BaseModel):
    """Body of ``POST /api/enhance/{id}``; both fields optional (server's model, full strength)."""

    model: str | None = None
    strength: float = Field(1.0, ge=0.0, le=1.0)


@dataclass
class Item:
    """One uploaded photo: its folder in the workdir, its name as uploaded, and its last result."""

    id: str
    folder: Path
    name: str
    format: str
    width: int
    height: int
    size: int
    original: Path
    result: Path | None = None
    model: str | None = None
    strength: float | None = None
    version: int = 0  # bumped per render: the page appends it to URLs so browsers never show a stale one
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^\w.-]+", "_", Path(self.name).stem).strip("._") or "photo"
        return f"{stem[:80]}_dslr{_EXT[self.format]}"

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


class ServeState:
    """Everything the app holds: temp folder, photos by id, Enhancers by model, the bounded pool."""

    def __init__(
        self,
        model: str,
        max_upload_mb: float,
        max_pixels: int,
        workers: int,
        queue: int,
        workdir: str | Path | None,
        device: str,
    ) -> None:
        if workers < 1 or queue < 0:
            raise DslrifyError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        self.default_model = model
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb = max_upload_mb
        self.max_pixels = max_pixels
        self.workers, self.queue, self.device = workers, queue, device
        self.tmp = tempfile.TemporaryDirectory(prefix="dslrify-serve-", dir=workdir)
        self.root = Path(self.tmp.name)
        self.items: OrderedDict[str, Item] = OrderedDict()
        self.enhancers: dict[str, Enhancer] = {}
        self._enhancer_lock = threading.Lock()
        # Model work: ``workers`` threads; light work (header checks, previews, zips): its own two
        # threads, so a download or an upload check never waits behind a long enhancement.
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dslrify-enhance")
        self.light = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dslrify-io")
        self.admitted = 0  # enhancements running or waiting; touched only on the event loop

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[dict[str, str]]:
        """Shipped models whose weights are installed, plus the server's model if it is a folder."""
        out = [
            {"name": e.name, "description": e.description}
            for e in MODELS.values()
            if is_checkpoint_dir(e.path)
        ]
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

    def add(self, item: Item) -> None:
        self.items[item.id] = item
        while len(self.items) > MAX_ITEMS:
            _, old = self.items.popitem(last=False)
            _remove_tree(old.folder)

    def close(self) -> None:
        """Stop the pools (dropping queued work) and delete the temporary folder."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.light.shutdown(wait=True, cancel_futures=True)
        self.enhancers.clear()
        self.tmp.cleanup()


def _remove_tree(folder: Path) -> None:
    for p in folder.glob("*"):
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


# --- work done in threads ------------------------------------------------------------------------------


def _check_header(path: Path, name: str, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) from the header only; PhotoError for anything read_photo would refuse."""
    _heif_available()  # registers the HEIF opener when pillow-heif is installed
    try:
        with Image.open(path) as im:
            fmt, (w, h) = _READ_FORMATS.get(im.format or ""), im.size
            kind = im.format
    except UnidentifiedImageError as e:
        raise PhotoError(
            f"{name} is not a photo dslrify can read", "upload a JPEG, PNG, TIFF or WebP photo"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise PhotoError(f"{name}: cannot read the image header ({e})", "the file is damaged") from e
    if fmt is None:
        raise PhotoError(
            f"{name} is a {kind} image, which dslrify does not read", "convert it to PNG or JPEG"
        )
    if w * h > max_pixels:
        raise PhotoError(
            f"{name} is {w} x {h} = {w * h:,} pixels, more than this server's limit of {max_pixels:,}",
            "resize it, or restart dslrify serve with a larger --max-pixels",
        )
    return fmt, w, h


def _preview(pixels: torch.Tensor, icc: bytes | None, dst: Path, side: int = PREVIEW_SIDE) -> None:
    """A screen-size JPEG of (1, 3, H, W) float pixels, with the ICC profile so browsers show true colour."""
    h, w = pixels.shape[-2:]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        pixels = F.interpolate(pixels, size=size, mode="area")  # area: no aliasing on downscale
    arr = (pixels[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    tmp = dst.with_suffix(".part")
    Image.fromarray(np.ascontiguousarray(arr)).save(
        tmp, "JPEG", quality=85, **({"icc_profile": icc} if icc else {})
    )
    tmp.replace(dst)  # a browser never fetches a half-written preview


def _render(state: ServeState, item: Item, model: str, strength: float) -> float:
    """Enhance ``item`` with ``model`` at ``strength``: full-size result + two previews. Returns seconds."""
    start = time.perf_counter()
    enhancer = state.enhancer(model)
    photo = read_photo(item.original, max_pixels=state.max_pixels)
    y = enhancer.enhance_tensor(photo.pixels)
    if strength != 1.0:
        y = torch.lerp(photo.pixels, y, strength)
    result = item.folder / f"result{_EXT[item.format]}"
    write_photo(result, photo, y, quality=95)  # keeps EXIF, ICC and XMP
    _preview(y, photo.icc_profile, item.folder / "preview_result.jpg")
    original_preview = item.folder / "preview_original.jpg"
    if not original_preview.exists():
        _preview(photo.pixels, photo.icc_profile, original_preview)
    # The full-size "view" copies belong to the previous render: drop them (made again on demand).
    (item.folder / "full_result.jpg").unlink(missing_ok=True)
    return time.perf_counter() - start


def _full_view(item: Item, kind: str, max_pixels: int) -> Path:
    """A full-resolution file a browser can show (for the 100% zoom): the file itself or a JPEG copy."""
    src = item.original if kind == "original" else item.result
    assert src is not None
    if item.format in _BROWSER_FORMATS:
        return src
    dst = item.folder / f"full_{kind}.jpg"
    if not dst.exists():
        photo = read_photo(src, max_pixels=max_pixels)
        tmp = item.folder / f"full_{kind}.part.jpg"
        write_photo(tmp, dataclasses.replace(photo, alpha=None), quality=92)  # a view copy: 8-bit JPEG
        tmp.replace(dst)
    return dst


def _write_zip(files: list[tuple[Path, str]], dst: Path) -> None:
    # Stored, not deflated: JPEG/WebP are compressed already, and deflating 12 MP PNGs costs seconds.
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
        for path, name in files:
            zf.write(path, name)


# --- the app -------------------------------------------------------------------------------------------


async def _stream_upload(request: Request, dest: BinaryIO, limit: int) -> str | None:
    """Write the uploaded file's bytes to ``dest``, at most ``limit`` bytes; returns its name if sent.

    Accepts ``multipart/form-data`` (first file field) or a raw body (name from ``?name=``). The
    multipart parser is fed chunk by chunk, so nothing is buffered whole and no other file is written.
    """
    ctype = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 64 * 1024:  # allow for multipart framing
        raise _TooLarge
    if not ctype.startswith("multipart/form-data"):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            dest.write(chunk)
        if size == 0:
            raise ApiError(400, "the upload is empty", "send the photo's bytes as the request body")
        return request.query_params.get("name")

    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart upload without a boundary", "send the photo as form field 'file'")
    part: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "in_file": False}
    found: dict[str, Any] = {"name": None, "size": 0, "done": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in disp and not found["done"]:
            part["in_file"] = True
            found["name"] = disp[b"filename"].decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["in_file"]:
            found["size"] += end - start
            if found["size"] > limit:
                raise _TooLarge
            dest.write(data[start:end])

    def on_part_end() -> None:
        if part["in_file"]:
            found["done"] = True
        part.update(headers={}, in_file=False)

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async for chunk in request.stream():
        parser.write(chunk)
    parser.finalize()
    if not found["done"]:
        raise ApiError(400, "the upload holds no file", "send the photo as a multipart file field")
    if found["size"] == 0:
        raise ApiError(400, f"{found['name'] or 'the upload'} is empty (0 bytes)", "pick the photo again")
    return found["name"]


def create_app(
    model: str = "default",
    max_upload_mb: float = 100,
    max_pixels: int = DEFAULT_SERVE_MAX_PIXELS,
    queue: int = 8,
    workdir: str | Path | None = None,
    workers: int = 1,
    device: str = "auto",
    preload: bool = False,
) -> FastAPI:
    """The web app: the page at ``/``, the JSON API under ``/api`` (see docs/serve.md).

    ``model``: the model selected first (a name from ``dslrify models`` or a checkpoint folder).
    ``max_upload_mb`` / ``max_pixels``: per-photo limits (413 / 400 beyond them). ``queue``: how many
    enhancements may wait for one of the ``workers`` threads before the answer is 503.
    ``workdir``: where the temporary folder is made (default: the system's temp folder).
    ``preload``: build the first model now, so a wrong name fails at start and the first photo is quick.
    """
    state = ServeState(model, max_upload_mb, max_pixels, workers, queue, workdir, device)
    if preload:
        try:
            state.enhancer(model)
        except BaseException:
            state.close()
            raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="dslrify", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": e.message, "advice": e.advice}, status_code=e.status, headers=e.headers)

    @app.exception_handler(DslrifyError)
    async def dslrify_error(request: Request, e: DslrifyError) -> JSONResponse:
        # The photo (or the request) is at fault, never the server: 400 with the library's message.
        return JSONResponse({"error": e.message, "advice": e.advice}, status_code=400)

    async def in_thread(pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        """Models the page can choose from, and the server's limits."""
        return {
            "models": state.models(),
            "default": state.default_model,
            "max_upload_mb": state.max_upload_mb,
            "max_pixels": state.max_pixels,
        }

    @app.post("/api/upload")
    async def upload(request: Request) -> dict[str, Any]:
        """Store one photo (multipart field or raw body); its header is checked, nothing is enhanced."""
        photo_id = secrets.token_urlsafe(12)
        folder = state.root / photo_id
        folder.mkdir()
        raw = folder / "upload"
        try:
            with open(raw, "wb") as f:
                name = await _stream_upload(request, f, state.max_upload_bytes)
            name = Path(name or "photo").name or "photo"  # a name to show and to derive downloads from
            fmt, w, h = await in_thread(state.light, _check_header, raw, name, state.max_pixels)
        except _TooLarge:
            _remove_tree(folder)
            raise ApiError(
                413,
                f"the upload is larger than this server's limit of {state.max_upload_mb:g} MB",
                "restart dslrify serve with a larger --max-upload-mb",
            ) from None
        except BaseException:
            _remove_tree(folder)
            raise
        original = raw.rename(folder / f"original{_EXT[fmt]}")  # read_photo wants a known extension
        item = Item(photo_id, folder, name, fmt, w, h, original.stat().st_size, original)
        state.add(item)
        return item.public()

    @app.post("/api/enhance/{photo_id}")
    async def enhance(photo_id: str, body: EnhanceRequest | None = None) -> dict[str, Any]:
        """Enhance (or re-render) an uploaded photo: model + strength; 503 when the queue is full."""
        body = body or EnhanceRequest()
        item = state.get(photo_id)
        model_name = state.check_model(body.model or state.default_model)
        if state.admitted >= state.workers + state.queue:
            raise ApiError(
                503,
                f"the server is busy: {state.admitted} photos are being enhanced or queued",
                "try again in a few seconds",
                headers={"Retry-After": "5"},
            )
        state.admitted += 1
        try:
            async with item.lock:  # one render per photo at a time: result and previews stay consistent
                version = item.version + 1
                seconds = await in_thread(state.pool, _render, state, item, model_name, body.strength)
                item.result = item.folder / f"result{_EXT[item.format]}"
                item.model, item.strength, item.version = model_name, body.strength, version
        finally:
            state.admitted -= 1
        return {**item.public(), "seconds": round(seconds, 3)}

    @app.get("/api/photo/{photo_id}")
    async def photo_info(photo_id: str) -> dict[str, Any]:
        return state.get(photo_id).public()

    @app.delete("/api/photo/{photo_id}")
    async def delete_photo(photo_id: str) -> dict[str, Any]:
        """Forget a photo and delete its files now (the page's remove button)."""
        item = state.get(photo_id)
        async with item.lock:
            state.items.pop(item.id, None)
            _remove_tree(item.folder)
        return {"deleted": photo_id}

    def need_result(item: Item) -> Path:
        if item.result is None or not item.result.exists():
            raise ApiError(409, f"{item.name} is not enhanced yet", f"POST /api/enhance/{item.id} first")
        return item.result

    @app.get("/api/result/{photo_id}")
    async def result(photo_id: str) -> FileResponse:
        """The full-resolution result in the source's format, with its EXIF, ICC and XMP."""
        item = state.get(photo_id)
        return FileResponse(need_result(item), filename=item.download_name)

    @app.get("/api/image/{photo_id}/{kind}")
    async def image(photo_id: str, kind: str, size: str = "screen") -> FileResponse:
        """What the page shows: ``screen`` previews (JPEG, long side 1600) or ``full`` resolution."""
        item = state.get(photo_id)
        if kind not in ("original", "result") or size not in ("screen", "full"):
            raise ApiError(400, "kind must be original or result, size screen or full")
        need_result(item)  # previews are made by the first render
        if size == "screen":
            path = item.folder / f"preview_{kind}.jpg"
        else:
            path = await in_thread(state.light, _full_view, item, kind, state.max_pixels)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/zip")
    async def zip_results(ids: str) -> Response:
        """All enhanced results among ``ids`` (comma-separated) in one zip; unenhanced ones are skipped."""
        items = [state.get(i) for i in dict.fromkeys(x for x in ids.split(",") if x)]
        files, used = [], set()
        for item in items:
            if item.result is None:
                continue
            name, n = item.download_name, 1
            while name in used:  # two uploads of IMG_0001.jpg must not overwrite each other in the zip
                n += 1
                name = f"{Path(item.download_name).stem}_{n}{Path(item.download_name).suffix}"
            used.add(name)
            files.append((item.result, name))
        if not files:
            raise ApiError(409, "none of these photos is enhanced yet", "enhance them first")
        dst = state.root / f"results-{secrets.token_hex(6)}.zip"
        await in_thread(state.light, _write_zip, files, dst)
        from starlette.background import BackgroundTask

        return FileResponse(
            dst,
            filename="dslrify-results.zip",
            media_type="application/zip",
            background=BackgroundTask(dst.unlink, missing_ok=True),  # removed once sent
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
