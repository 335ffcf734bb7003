"""Helpers shared by the ``dslrify serve`` tests: test photos, clients, and a live uvicorn on loopback.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from dslrify.serve import bind_socket, create_app, make_server  # noqa: E402

MAKE = "dslrify-test-phone"
MODEL = "paper"  # the small shipped U-Net: a 256 x 192 photo takes milliseconds
BASE = "http://127.0.0.1:8000"  # the Host a browser on this machine sends


@functools.cache
def srgb_icc() -> bytes:
    """One sRGB profile per run (LittleCMS stamps each new profile with the time)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_metadata(
    size: tuple[int, int] = (256, 192), source: Path | None = None, orientation: int | None = None
) -> bytes:
    """A JPEG with EXIF (Make, Model, DateTime, optional Orientation) and an ICC profile."""
    if source is not None:
        im = Image.open(source).convert("RGB")
        im.thumbnail(size)
    else:
        rng = np.random.default_rng(0)
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 256], axis=-1) + rng.normal(0, 8, (h, w, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = MAKE
    exif[0x0110] = "Model X"
    exif[0x0132] = "2024:05:01 12:00:00"
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, exif=exif, icc_profile=srgb_icc())
    return buf.getvalue()


def client_for(tmp_path: Path, **kwargs: Any) -> TestClient:
    """A TestClient on a fresh app (temp folder under ``tmp_path``), addressed as 127.0.0.1:8000."""
    kwargs.setdefault("model", MODEL)
    return TestClient(create_app(workdir=tmp_path, **kwargs), base_url=BASE, raise_server_exceptions=False)


def upload(client: TestClient, data: bytes, name: str = "IMG_0001.jpg") -> dict:
    r = client.post("/api/upload", files={"file": (name, data, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def enhance(client: TestClient, photo_id: str, **body: Any) -> dict:
    r = client.post(f"/api/enhance/{photo_id}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r: Any, status: int | tuple[int, ...], text: str = "") -> dict:
    """A JSON ``{"error", "advice"}`` answer with ``status`` whose error contains ``text``."""
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error", "advice"} and isinstance(body["error"], str), body
    assert text in body["error"], body
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(tmp_path: Path, **kwargs: Any) -> Iterator[str]:
    """The app under a real uvicorn (as ``dslrify serve`` runs it) on 127.0.0.1, in a thread."""
    kwargs.setdefault("model", MODEL)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(create_app(workdir=tmp_path, **kwargs))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
