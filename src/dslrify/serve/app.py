"""The FastAPI app behind ``dslrify serve``: upload once, enhance (and re-enhance) by id, download.

Routes are module-level functions over one ``ServeState`` (``app.state.serve``, see ``state.py``);
the work they start runs in its thread pools (``work.py``), uploads stream to disk (``upload.py``) and
``security.py`` decides who may ask. Every error is JSON ``{"error": ..., "advice": ...}`` with a 4xx
status when the request or the photo is at fault (docs/serve.md lists them).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from dslrify.errors import DslrifyError
from dslrify.serve import work
from dslrify.serve.security import Guard, allowed_hosts
from dslrify.serve.state import ApiError, Item, ServeState
from dslrify.serve.upload import save_upload

STATIC_DIR = Path(__file__).parent / "static"
# A server default well below read_photo's: one 50 MP photo is already ~600 MB as float32.
DEFAULT_SERVE_MAX_PIXELS = 50_000_000
T = TypeVar("T")


class EnhanceRequest(BaseModel):
    """Body of ``POST /api/enhance/{id}``; both fields optional (server's model, full strength)."""

    model: str | None = None
    strength: float = Field(1.0, ge=0.0, le=1.0)


def _state(request: Request) -> ServeState:
    state: ServeState = request.app.state.serve
    return state


State = Annotated[ServeState, Depends(_state)]
router = APIRouter()


async def _in_thread(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _need_result(item: Item) -> Path:
    if item.result is None or not item.result.exists():
        raise ApiError(409, f"{item.name} is not enhanced yet", f"POST /api/enhance/{item.id} first")
    return item.result


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/api/models")
async def models(state: State) -> dict[str, Any]:
    """Models the page can choose from, and the server's limits."""
    return {
        "models": state.models(),
        "default": state.default_model,
        "max_upload_mb": state.max_upload_mb,
        "max_pixels": state.max_pixels,
    }


@router.post("/api/upload")
async def upload(request: Request, state: State) -> dict[str, Any]:
    """Store one photo (multipart field or raw body); its header is checked, nothing is enhanced."""
    folder = state.new_folder()
    try:
        name = await save_upload(request, folder / "upload", state.max_upload_bytes)
        info = await _in_thread(state.light, work.check_upload, folder / "upload", name, state.max_pixels)
    except BaseException:  # a refused photo, a client that went away: nothing stays behind
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return state.add_upload(folder, folder / "upload", name, info).public()


@router.post("/api/enhance/{photo_id}")
async def enhance(photo_id: str, state: State, body: EnhanceRequest | None = None) -> dict[str, Any]:
    """Enhance (or re-render) an uploaded photo: model + strength; 503 when the server is busy."""
    body = body or EnhanceRequest(model=None, strength=1.0)
    item = state.get(photo_id)
    model_name = state.check_model(body.model or state.default_model)
    with state.admitted(item):
        async with item.lock:  # one render per photo at a time: result and previews stay consistent
            seconds = await _in_thread(state.pool, work.render, state, item, model_name, body.strength)
            item.rendered(model_name, body.strength)
    state.fit_disk(keep=item)
    return {**item.public(), "seconds": round(seconds, 3)}


@router.get("/api/photo/{photo_id}")
async def photo_info(photo_id: str, state: State) -> dict[str, Any]:
    return state.get(photo_id).public()


@router.delete("/api/photo/{photo_id}")
async def delete_photo(photo_id: str, state: State) -> dict[str, Any]:
    """Forget a photo and delete its files now (the page's remove button)."""
    item = state.get(photo_id)
    async with item.lock:
        state.forget(item)
    return {"deleted": photo_id}


@router.get("/api/result/{photo_id}")
async def result(photo_id: str, state: State) -> FileResponse:
    """The full-resolution result in the source's format, with its EXIF, ICC and XMP."""
    item = state.get(photo_id)
    return FileResponse(_need_result(item), filename=item.download_name)


@router.get("/api/image/{photo_id}/{kind}")
async def image(photo_id: str, kind: str, state: State, size: str = "screen") -> FileResponse:
    """What the page shows: ``screen`` previews (JPEG, long side 1600) or ``full`` resolution."""
    item = state.get(photo_id)
    if kind not in ("original", "result") or size not in ("screen", "full"):
        raise ApiError(400, "kind must be original or result, size screen or full")
    _need_result(item)  # previews are made by the first render
    if size == "screen":
        path = item.folder / f"preview_{kind}.jpg"
    else:
        path = await _in_thread(state.light, work.full_view, item, kind, state.max_pixels)
        item.measure()  # a JPEG view copy of a TIFF or HEIF counts against the disk budget
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/zip")
async def zip_results(ids: str, state: State) -> Response:
    """All enhanced results among ``ids`` (comma-separated) in one zip; unenhanced ones are skipped."""
    files = work.zip_entries([state.get(i) for i in dict.fromkeys(x for x in ids.split(",") if x)])
    if not files:
        raise ApiError(409, "none of these photos is enhanced yet", "enhance them first")
    dst = state.root / f"results-{secrets.token_hex(6)}.zip"
    await _in_thread(state.light, work.write_zip, files, dst)
    return FileResponse(
        dst,
        filename="dslrify-results.zip",
        media_type="application/zip",
        background=BackgroundTask(dst.unlink, missing_ok=True),  # removed once sent
    )


# --- errors: always {"error", "advice"} ------------------------------------------------------------------


def _answer(
    status: int, error: str, advice: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "advice": advice}, status_code=status, headers=headers)


async def _api_error(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, ApiError)
    return _answer(e.status, e.message, e.advice, e.headers)


async def _dslrify_error(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, DslrifyError)
    return _answer(400, e.message, e.advice)  # the photo or the request is at fault, never the server


async def _validation_error(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg', 'invalid')}"
        for err in e.errors()
    )
    return _answer(422, f"invalid request: {problems}", "see GET /api/openapi.json for the API")


async def _http_error(request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, HTTPException)
    advice = "see docs/serve.md for the API" if e.status_code in (404, 405) else None
    return _answer(e.status_code, str(e.detail), advice, dict(e.headers or {}))


def create_app(
    model: str = "default",
    max_upload_mb: float = 100,
    max_pixels: int = DEFAULT_SERVE_MAX_PIXELS,
    queue: int = 8,
    workdir: str | Path | None = None,
    workers: int = 1,
    device: str = "auto",
    preload: bool = False,
    host: str = "127.0.0.1",
    allow_hosts: Iterable[str] = (),
    max_memory_mb: float | None = None,
    max_disk_mb: float = 4096,
) -> FastAPI:
    """The web app: the page at ``/``, the JSON API under ``/api`` (see docs/serve.md).

    ``model``: the model selected first (a name from ``dslrify models`` or a checkpoint folder).
    ``max_upload_mb`` / ``max_pixels``: per-photo limits (413 / 400 beyond them). ``max_memory_mb``:
    the memory that admitted enhancements may take together (default: half of what is free now);
    ``queue``: at most that many wait beyond the ``workers`` threads. Beyond either, 503.
    ``workdir``: where the temporary folder is made (default: the system's); ``max_disk_mb`` bounds it.
    ``host`` / ``allow_hosts``: the bound address and extra names the ``Host`` header may carry.
    ``preload``: build the first model now, so a wrong name fails at start and the first photo is quick.
    """
    state = ServeState(
        model, max_upload_mb, max_pixels, workers, queue, workdir, device, max_memory_mb, max_disk_mb
    )
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

    app = FastAPI(
        title="dslrify", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.serve = state
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DslrifyError, _dslrify_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(Guard, hosts=allowed_hosts(host, allow_hosts))
    return app


# --- running it -------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; DslrifyError (one line) when the port is taken or the address
    is not this machine's. Binding before uvicorn starts means no "open http://..." for a dead server."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise DslrifyError(
            f"cannot use --host {host} ({e.strerror or e})", "give an address of this machine"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: quick restarts work
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise DslrifyError(f"port {port} is in use, choose another with --port") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            advice = "choose a port above 1023 with --port"
            raise DslrifyError(f"port {port} needs extra rights", advice) from None
        raise DslrifyError(
            f"cannot listen on {host}:{port} ({e.strerror or e})", "check --host and --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def make_server(app: FastAPI) -> uvicorn.Server:
    """The uvicorn server ``dslrify serve`` runs ``app`` with; ``.run(sockets=[sock])`` serves it."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning"))


def run_app(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` (from ``bind_socket``) until Ctrl+C or SIGTERM."""
    make_server(app).run(sockets=[sock])
