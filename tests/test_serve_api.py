"""``dslrify serve``'s JSON API through FastAPI's TestClient: upload, enhance, re-render, download, zip."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serve_support import MAKE, MODEL, assert_error, client_for, enhance, jpeg_with_metadata, srgb_icc, upload


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    return jpeg_with_metadata()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module (the model loads once); its temp folder lives under a pytest folder."""
    with client_for(tmp_path_factory.mktemp("serve")) as c:
        yield c


def test_page_static_files_favicon_and_models(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="files"' in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200
    icon = client.get("/favicon.ico")  # browsers ask for it on their own: no 404 in the console
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
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
            assert shown.status_code == 200
            im = Image.open(io.BytesIO(shown.content))
            assert im.size == (256, 192) and im.info.get("icc_profile") == srgb_icc()


def test_portrait_photo_reports_its_upright_size(client: TestClient) -> None:
    """EXIF orientation 6: stored 256 x 192, shown (and enhanced) 192 x 256."""
    info = upload(client, jpeg_with_metadata((256, 192), orientation=6), "portrait.jpg")
    assert (info["width"], info["height"]) == (192, 256)
    result = enhance(client, info["id"])
    preview = Image.open(io.BytesIO(client.get(result["preview"]["result"]).content))
    assert preview.size == (192, 256)


def test_rerender_with_another_strength_without_upload(client: TestClient, photo_bytes: bytes) -> None:
    info = upload(client, photo_bytes)
    count = len(client.app.state.serve.items)
    full = enhance(client, info["id"], model=MODEL, strength=1.0)
    at_full = np.asarray(Image.open(io.BytesIO(client.get(full["download"]).content)), dtype=np.float32)
    none = enhance(client, info["id"], model=MODEL, strength=0.0)  # same id: no second upload
    assert none["id"] == full["id"] and none["version"] == full["version"] + 1 and none["strength"] == 0.0
    assert len(client.app.state.serve.items) == count
    original = np.asarray(Image.open(io.BytesIO(photo_bytes)), dtype=np.float32)
    at_zero = np.asarray(Image.open(io.BytesIO(client.get(none["download"]).content)), dtype=np.float32)
    assert np.abs(at_zero - original).mean() < 2.0  # strength 0 is the input (up to JPEG re-encoding)
    assert np.abs(at_full - original).mean() > 4.0  # and strength 1 is not
    # The shared Enhancer keeps its own strength: the per-request one never sticks to it.
    assert client.app.state.serve.enhancer(MODEL).strength == 1.0
    # Another model on the same upload, too (the server caches one Enhancer per model).
    other = enhance(client, info["id"], model="default", strength=0.5)
    assert other["model"] == "default" and other["version"] == none["version"] + 1


def test_bad_files_get_400_with_message_never_500(client: TestClient, photo_bytes: bytes) -> None:
    r = client.post("/api/upload", files={"file": ("notes.jpg", b"this is not a photo", "image/jpeg")})
    body = assert_error(r, 400, "notes.jpg is not a photo")
    assert body["advice"] and "dslrify-serve-" not in body["error"]  # no server path in messages
    # A valid header over damaged data passes the upload check and fails at decoding: still a 400.
    truncated = upload(client, photo_bytes[: len(photo_bytes) // 3] + b"\0" * 100, "cut.jpg")
    r = client.post(f"/api/enhance/{truncated['id']}", json={})
    assert_error(r, 400, "cut.jpg")
    assert_error(client.post("/api/upload", files={"file": ("empty.jpg", b"", "image/jpeg")}), 400)
    r = client.post(f"/api/enhance/{upload(client, photo_bytes)['id']}", json={"model": "nope"})
    assert_error(r, 400, "unknown model")
    assert_error(client.post("/api/enhance/doesnotexist1", json={}), 404)
    assert client.get("/api/result/../../etc/passwd").status_code == 404


def test_raw_body_upload(client: TestClient, photo_bytes: bytes) -> None:
    r = client.post("/api/upload?name=raw.jpg", content=photo_bytes, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["name"] == "raw.jpg"


def test_too_large_upload_is_413_and_leaves_nothing(tmp_path: Path, photo_bytes: bytes) -> None:
    limit_mb = 2_000 / 1024 / 1024  # 2,000 bytes: the test photo is larger
    with client_for(tmp_path, max_upload_mb=limit_mb) as c:
        root = c.app.state.serve.root
        r = c.post("/api/upload", files={"file": ("big.jpg", photo_bytes, "image/jpeg")})
        assert_error(r, 413, "larger than this server's limit")
        assert_error(c.post("/api/upload?name=big.jpg", content=photo_bytes), 413)  # raw body: same
        assert list(root.iterdir()) == []  # the partial upload is deleted
    assert list(tmp_path.iterdir()) == []  # and the temp folder is removed on shutdown


def test_pixel_limit_is_400(tmp_path: Path, photo_bytes: bytes) -> None:
    with client_for(tmp_path, max_pixels=10_000) as c:
        r = c.post("/api/upload", files={"file": ("wide.jpg", photo_bytes, "image/jpeg")})
        assert_error(r, 400, "more than the limit")


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
    assert_error(client.get(f"/api/zip?ids={pending}"), 409)
    assert not list(client.app.state.serve.root.glob("*.zip"))  # each zip is deleted once sent


def test_cli_has_serve_command() -> None:
    from typer.testing import CliRunner

    from dslrify.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--max-upload-mb" in result.output and "--queue" in result.output
