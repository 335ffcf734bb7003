"""``dslrify serve``: the JSON API through FastAPI's TestClient, and the page in headless Chromium.

The API tests run wherever the ``serve`` extra is installed. The browser test also needs Playwright's
Python package and Debian's ``/usr/bin/chromium`` (never ``playwright install``): it is skipped, with the
reason, when either is missing. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

pytest.importorskip("fastapi", reason="dslrify serve needs the serve extra: pip install 'dslrify[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from dslrify.serve import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_PHOTO = REPO / "assets" / "demo" / "phone.jpg"
SCREENSHOT = REPO / "docs" / "images" / "serve.png"
CHROMIUM = Path("/usr/bin/chromium")
MAKE = "dslrify-test-phone"
MODEL = "paper"  # the small shipped U-Net: a 256 x 192 photo takes milliseconds


@functools.cache
def srgb_icc() -> bytes:
    """One sRGB profile per run (LittleCMS stamps each new profile with the time)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_metadata(size: tuple[int, int] = (256, 192), source: Path | None = None) -> bytes:
    """A JPEG with EXIF (Make, Model, DateTime) and an ICC profile: a real photo when ``source`` is given."""
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
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, exif=exif, icc_profile=srgb_icc())
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    return jpeg_with_metadata()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module (the model loads once); its temp folder lives under a pytest folder."""
    workdir = tmp_path_factory.mktemp("serve")
    with TestClient(create_app(model=MODEL, workdir=workdir)) as c:
        yield c


def upload(client: TestClient, data: bytes, name: str = "IMG_0001.jpg") -> dict:
    r = client.post("/api/upload", files={"file": (name, data, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def enhance(client: TestClient, photo_id: str, **body) -> dict:
    r = client.post(f"/api/enhance/{photo_id}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# --- API -----------------------------------------------------------------------------------------------


def test_page_static_files_and_models(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="files"' in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    info = client.get("/api/models").json()
    names = [m["name"] for m in info["models"]]
    assert info["default"] == MODEL and {"default", "paper"} <= set(names)
    from dslrify.zoo import MODELS

    if "fast" in MODELS:  # the page offers the fast model whenever the zoo ships it
        assert "fast" in names


def test_upload_enhance_download_keeps_size_exif_icc(client: TestClient, photo_bytes: bytes) -> None:
    info = upload(client, photo_bytes, "My Photo.jpg")
    assert (info["width"], info["height"], info["format"], info["enhanced"]) == (256, 192, "JPEG", False)
    result = enhance(client, info["id"], model=MODEL, strength=1.0)
    assert result["enhanced"] and result["model"] == MODEL and result["version"] == 1
    r = client.get(result["download"])
    assert r.status_code == 200
    assert 'filename="My_Photo_dslr.jpg"' in r.headers["content-disposition"]
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "JPEG" and out.size == (256, 192)
    assert out.getexif()[0x010F] == MAKE and out.getexif()[0x0132] == "2024:05:01 12:00:00"
    assert out.info["icc_profile"] == srgb_icc()
    for kind in ("original", "result"):  # what the page shows: screen previews and the 100% view
        for url in (result["preview"][kind], result["full"][kind]):
            shown = client.get(url)
            assert shown.status_code == 200 and Image.open(io.BytesIO(shown.content)).size == (256, 192)


def test_rerender_with_another_strength_without_upload(client: TestClient, photo_bytes: bytes) -> None:
    info = upload(client, photo_bytes)
    count = len(client.app.state.serve.items)
    full = enhance(client, info["id"], model=MODEL, strength=1.0)
    none = enhance(client, info["id"], model=MODEL, strength=0.0)  # same id: no second upload
    assert none["id"] == full["id"] and none["version"] == full["version"] + 1 and none["strength"] == 0.0
    assert len(client.app.state.serve.items) == count
    original = np.asarray(Image.open(io.BytesIO(photo_bytes)), dtype=np.float32)
    at_zero = np.asarray(Image.open(io.BytesIO(client.get(none["download"]).content)), dtype=np.float32)
    assert np.abs(at_zero - original).mean() < 2.0  # strength 0 is the input (up to JPEG re-encoding)
    # Another model on the same upload, too (the server caches one Enhancer per model).
    other = enhance(client, info["id"], model="default", strength=0.5)
    assert other["model"] == "default" and other["version"] == none["version"] + 1


def test_bad_files_get_400_with_message_never_500(client: TestClient, photo_bytes: bytes) -> None:
    r = client.post("/api/upload", files={"file": ("notes.jpg", b"this is not a photo", "image/jpeg")})
    assert r.status_code == 400
    assert "notes.jpg is not a photo" in r.json()["error"] and r.json()["advice"]
    # A valid header over damaged data passes the upload check and fails at decoding: still a 400.
    truncated = upload(client, photo_bytes[: len(photo_bytes) // 3] + b"\0" * 100, "cut.jpg")
    r = client.post(f"/api/enhance/{truncated['id']}", json={})
    assert r.status_code == 400 and "cannot decode" in r.json()["error"]
    assert client.post("/api/upload", files={"file": ("empty.jpg", b"", "image/jpeg")}).status_code == 400
    r = client.post(f"/api/enhance/{upload(client, photo_bytes)['id']}", json={"model": "nope"})
    assert r.status_code == 400 and "unknown model" in r.json()["error"]
    assert client.post("/api/enhance/doesnotexist1", json={}).status_code == 404
    assert client.get("/api/result/../../etc/passwd").status_code == 404


def test_raw_body_upload(client: TestClient, photo_bytes: bytes) -> None:
    r = client.post("/api/upload?name=raw.jpg", content=photo_bytes, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["name"] == "raw.jpg"


def test_too_large_upload_is_413_and_leaves_nothing(tmp_path: Path, photo_bytes: bytes) -> None:
    limit_mb = 2_000 / 1024 / 1024  # 2,000 bytes: the test photo is larger
    with TestClient(create_app(model=MODEL, max_upload_mb=limit_mb, workdir=tmp_path)) as c:
        root = c.app.state.serve.root
        r = c.post("/api/upload", files={"file": ("big.jpg", photo_bytes, "image/jpeg")})
        assert r.status_code == 413 and "larger than this server's limit" in r.json()["error"]
        r = c.post("/api/upload?name=big.jpg", content=photo_bytes)  # raw body: same limit
        assert r.status_code == 413
        assert list(root.iterdir()) == []  # the partial upload is deleted
    assert list(tmp_path.iterdir()) == []  # and the temp folder is removed on shutdown


def test_pixel_limit_is_400(tmp_path: Path, photo_bytes: bytes) -> None:
    with TestClient(create_app(model=MODEL, max_pixels=10_000, workdir=tmp_path)) as c:
        r = c.post("/api/upload", files={"file": ("wide.jpg", photo_bytes, "image/jpeg")})
        assert r.status_code == 400 and "more than this server's limit" in r.json()["error"]


def test_zip_holds_every_result(client: TestClient, photo_bytes: bytes) -> None:
    ids = [upload(client, photo_bytes, "same.jpg")["id"] for _ in range(2)]
    pending = upload(client, photo_bytes, "later.jpg")["id"]  # not enhanced: left out of the zip
    for i in ids:
        enhance(client, i, strength=0.7)
    r = client.get(f"/api/zip?ids={','.join([*ids, pending])}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert sorted(zf.namelist()) == ["same_dslr.jpg", "same_dslr_2.jpg"]
        im = Image.open(io.BytesIO(zf.read("same_dslr.jpg")))
        assert im.size == (256, 192) and im.getexif()[0x010F] == MAKE
    assert client.get(f"/api/zip?ids={pending}").status_code == 409


def test_full_queue_answers_503(tmp_path: Path, photo_bytes: bytes) -> None:
    with TestClient(create_app(model=MODEL, queue=0, workdir=tmp_path)) as c:
        photo_id = upload(c, photo_bytes)["id"]
        c.app.state.serve.admitted = 1  # as if one photo were being enhanced by the only worker
        r = c.post(f"/api/enhance/{photo_id}", json={})
        assert r.status_code == 503 and "busy" in r.json()["error"] and r.headers["retry-after"]
        c.app.state.serve.admitted = 0
        assert c.post(f"/api/enhance/{photo_id}", json={}).status_code == 200


def test_cli_has_serve_command() -> None:
    from typer.testing import CliRunner

    from dslrify.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--max-upload-mb" in result.output and "--queue" in result.output


# --- the page in a browser -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """uvicorn on 127.0.0.1 and a free port, in a background thread."""
    uvicorn = pytest.importorskip("uvicorn")
    port = free_port()
    config = uvicorn.Config(
        create_app(model=MODEL, workdir=tmp_path), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_page_in_headless_chromium(live_server: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip)")
    photo = tmp_path / "phone photo.jpg"
    photo.write_bytes(jpeg_with_metadata((960, 640), DEMO_PHOTO if DEMO_PHOTO.exists() else None))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a JPEG")

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 860, "height": 830}, accept_downloads=True)
            uploads: list[str] = []
            page.on("request", lambda r: uploads.append(r.url) if "/api/upload" in r.url else None)
            page.goto(live_server)
            sync_api.expect(page.locator("#model option")).not_to_have_count(0)
            assert page.locator("#model").input_value() == MODEL

            page.set_input_files("#files", str(photo))
            card = page.locator(".card").first
            download = card.locator("a.download")
            sync_api.expect(download).to_have_attribute("aria-disabled", "false", timeout=30_000)
            sync_api.expect(card.locator("img.after")).to_have_js_property("complete", True)
            assert card.locator("img.after").evaluate("img => img.naturalWidth") > 0

            # Drag the before/after handle to a quarter of the width.
            box = card.locator(".stage").bounding_box()
            assert box is not None
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=5)
            page.mouse.up()
            now = int(card.locator(".handle").get_attribute("aria-valuenow") or -1)
            assert 20 <= now <= 30

            # The zoom and side-by-side toggles switch their views.
            card.locator(".side-toggle").click()
            assert "side" in (card.get_attribute("class") or "")
            card.locator(".side-toggle").click()

            with page.expect_download() as info:
                download.click()
            saved = tmp_path / info.value.suggested_filename
            info.value.save_as(saved)
            assert saved.name == "phone_photo_dslr.jpg"
            out = Image.open(saved)
            assert out.size == Image.open(photo).size and out.getexif()[0x010F] == MAKE
            assert out.info["icc_profile"] == srgb_icc()

            # Strength re-renders the photo already on the server: no second upload.
            page.locator("#strength").fill("50")
            sync_api.expect(card.locator(".status")).to_contain_text(f"{MODEL}, 50%", timeout=30_000)
            assert len(uploads) == 1
            page.locator("#strength").fill("100")
            sync_api.expect(card.locator(".status")).to_contain_text(f"{MODEL}, 100%", timeout=30_000)

            save_screenshot(page, tmp_path)

            page.set_input_files("#files", str(bad))
            bad_card = page.locator(".card.error")
            sync_api.expect(bad_card.locator(".status")).to_contain_text("broken.jpg is not a photo")
        finally:
            browser.close()


def save_screenshot(page, tmp_path: Path) -> None:
    """Write docs/images/serve.png (palette PNG, < 300 KB) when it is missing or asked for.

    Set DSLRIFY_UPDATE_SCREENSHOT=1 to refresh it; otherwise a test run leaves the checkout unchanged.
    """
    shot = tmp_path / "serve.png"
    page.evaluate("window.scrollTo(0, 0)")
    Image.open(io.BytesIO(page.screenshot())).convert("RGB").quantize(128, dither=Image.Dither.NONE).save(
        shot, optimize=True
    )
    assert shot.stat().st_size < 300_000
    if os.environ.get("DSLRIFY_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        with contextlib.suppress(OSError):  # a read-only checkout: the screenshot is a docs extra
            shutil.copyfile(shot, SCREENSHOT)
