"""Hostile and malformed requests to ``dslrify serve``: each gets a JSON 4xx, never a 5xx or a reset.

Photo bombs, corrupt 16-bit TIFFs, garbage and oversized multipart bodies, invalid JSON, cross-site
requests and foreign Host names; then the budgets (memory admission, disk) and start-up (stale folders
of killed servers, a busy port). The TestClient covers the app; a real uvicorn on 127.0.0.1 checks the
answers arrive over a socket too.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dslrify.errors import DslrifyError
from dslrify.serve import bind_socket
from dslrify.serve.security import allowed_hosts
from dslrify.serve.state import FOLDER_PREFIX, work_cost
from inputs_gen import claim_jpeg, claim_png
from serve_support import (
    BASE,
    assert_error,
    client_for,
    enhance,
    jpeg_with_metadata,
    live_server,
    upload,
)

BOUNDARY = "dslrifyboundary"


def corrupt_tiff16() -> bytes:
    """A deflate-compressed 16-bit RGB TIFF whose compressed strip is overwritten with zeros."""
    tifffile = pytest.importorskip("tifffile")
    arr = np.random.default_rng(1).integers(0, 65535, (64, 64, 3)).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, compression="zlib", photometric="rgb")
    data = bytearray(buf.getvalue())
    data[200:600] = bytes(400)
    return bytes(data)


def multipart(part_headers: bytes, payload: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\n".encode()
        + part_headers
        + b"\r\n\r\n"
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
FILE_HEADER = b'Content-Disposition: form-data; name="file"; filename="a.jpg"'


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with client_for(tmp_path_factory.mktemp("serve")) as c:
        yield c


# --- bad photos and bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bomb.png", claim_png(20_000, 20_000, 1, 0)),  # over Pillow's own bomb limit (179 MP)
        ("big.png", claim_png(10_000, 10_000, 1, 0)),  # over the server's 50 MP
        ("big.jpg", claim_jpeg(10_000, 10_000)),
    ],
)
def test_photo_bombs_are_400_at_upload(client: TestClient, name: str, data: bytes) -> None:
    r = client.post("/api/upload", files={"file": (name, data, "image/png")})
    assert_error(r, 400, name)
    r = client.post(f"/api/upload?name={name}", content=data)  # raw body: the same answer
    assert_error(r, 400, "more than")


def test_corrupt_16bit_tiff_is_400_at_enhance(client: TestClient) -> None:
    info = upload(client, corrupt_tiff16(), "scan.tif")  # the header is fine: accepted
    assert (info["format"], info["width"]) == ("TIFF", 64)
    body = assert_error(client.post(f"/api/enhance/{info['id']}", json={}), 400, "scan.tif")
    assert body["advice"]


@pytest.mark.parametrize(
    "body",
    [
        b"garbage" * 100,  # no boundary at all
        multipart(FILE_HEADER, b"x" * 10)[:-5],  # cut before the closing boundary
        f"--{BOUNDARY}\r\n\x00\x01\x02\r\n\r\n".encode(),  # a header line that is not a header
        multipart(FILE_HEADER + b"\r\nX-Long: " + b"a" * 100_000, b"photo"),  # a 100 kB part header
        multipart(b'Content-Disposition: form-data; name="note"', b"no file here"),
    ],
    ids=["garbage", "cut", "binary-header", "100kB-header", "no-file"],
)
def test_malformed_multipart_is_400(client: TestClient, body: bytes) -> None:
    before = sorted(client.app.state.serve.root.iterdir())
    assert_error(client.post("/api/upload", content=body, headers=MULTIPART), 400)
    assert sorted(client.app.state.serve.root.iterdir()) == before  # nothing kept of a refused upload


def test_validation_and_routing_errors_have_the_json_shape(client: TestClient) -> None:
    photo_id = upload(client, jpeg_with_metadata())["id"]
    for body in ({"strength": 5}, {"strength": "much"}, {"model": 3}, [1, 2]):
        assert_error(client.post(f"/api/enhance/{photo_id}", json=body), 422, "invalid request")
    r = client.post(
        f"/api/enhance/{photo_id}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 422)
    assert_error(client.get("/api/zip"), 422, "ids")
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.put("/api/upload"), 405)
    assert_error(client.get(f"/api/image/{photo_id}/sideways"), (400, 409))


# --- who may ask -----------------------------------------------------------------------------------------


def test_cross_site_requests_are_refused(client: TestClient) -> None:
    photo = jpeg_with_metadata()
    photo_id = upload(client, photo)["id"]  # no Origin (curl, scripts): allowed
    evil = {"origin": "http://evil.example"}
    assert_error(client.post("/api/upload", content=photo, headers=evil), 403, "cross-site")
    assert_error(client.post(f"/api/enhance/{photo_id}", headers=evil), 403)  # the body-less POST
    assert_error(client.post(f"/api/enhance/{photo_id}", headers={"origin": "null"}), 403)
    other_port = {"origin": "http://127.0.0.1:9999"}  # another local server is another site
    assert_error(client.post(f"/api/enhance/{photo_id}", json={}, headers=other_port), 403)
    for site in ("cross-site", "same-site"):
        r = client.get(f"/api/photo/{photo_id}", headers={"sec-fetch-site": site})
        assert_error(r, 403, site)
    # The page itself, from its own origin, works; so does following a link to the page.
    own = {"origin": BASE, "sec-fetch-site": "same-origin"}
    assert client.post(f"/api/enhance/{photo_id}", json={}, headers=own).status_code == 200
    link = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert client.get("/", headers=link).status_code == 200
    assert_error(client.post("/", headers=link), 403)


def test_foreign_host_names_are_refused(tmp_path: Path) -> None:
    with client_for(tmp_path, allow_hosts=["photos.lan"]) as c:
        assert_error(c.get("/api/models", headers={"host": "evil.example"}), 400, "evil.example")
        assert_error(c.get("/", headers={"host": "evil.example:8000"}), 400)
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "photos.lan:8000"):
            assert c.get("/api/models", headers={"host": host}).status_code == 200, host
    hostname = socket.gethostname().lower()
    assert hostname not in allowed_hosts("127.0.0.1")  # loopback-bound: loopback names only
    assert {hostname, "0.0.0.0"} <= allowed_hosts("0.0.0.0")  # bound wide: this machine's names too


def test_every_answer_carries_the_protective_headers(client: TestClient) -> None:
    answers = [
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/api/models"),
        client.get("/api/photo/doesnotexist1"),
        client.get("/", headers={"host": "evil.example"}),
    ]
    for r in answers:
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


# --- budgets -----------------------------------------------------------------------------------------------


def sparse_png(width: int, height: int) -> bytes:
    """A real, decodable gray PNG that is mostly flat: small on disk, large in memory. A few rows of
    noise keep it above the bytes-per-pixel plausibility bound that refuses forged size claims."""
    import io

    import numpy as np

    pixels = np.zeros((height, width), np.uint8)
    pixels[:6] = np.random.default_rng(0).integers(0, 256, (6, width), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_work_is_admitted_by_memory_cost_not_count(tmp_path: Path) -> None:
    small = jpeg_with_metadata()
    big = sparse_png(7_000, 7_000)  # ~40 kB on disk, ~2.6 GB to enhance
    budget_mb = (work_cost(7_000 * 7_000) + 2 * work_cost(256 * 192)) / 1024**2
    with client_for(tmp_path, max_memory_mb=budget_mb, queue=8) as c:
        big_id = upload(c, big, "big.png")["id"]
        small_id = upload(c, small)["id"]
        admission = c.app.state.serve.admission
        assert admission.admit(work_cost(7_000 * 7_000))  # as if one big photo were being enhanced
        body = assert_error(c.post(f"/api/enhance/{big_id}", json={}), 503, "busy")
        assert body["advice"] and int(c.post(f"/api/enhance/{big_id}").headers["retry-after"]) > 0
        assert enhance(c, small_id)["enhanced"]  # a small one still fits beside it
        admission.release(work_cost(7_000 * 7_000))
        assert (admission.used, admission.count) == (0, 0)


def test_temp_folder_is_bounded_in_bytes(tmp_path: Path) -> None:
    photo = jpeg_with_metadata((512, 384))
    limit = 8 * len(photo) / 1024**2  # room for eight uploads, or one enhanced photo and a few more
    with client_for(tmp_path, max_disk_mb=limit, max_upload_mb=limit) as c:
        state = c.app.state.serve
        ids = [upload(c, photo, f"p{i}.jpg")["id"] for i in range(12)]
        assert len(state.items) == 8
        enhance(c, ids[-1])
        used = sum(p.stat().st_size for p in state.root.rglob("*") if p.is_file())
        assert used <= state.max_disk_bytes
        assert ids[-1] in state.items and ids[0] not in state.items  # the oldest went first
        assert_error(c.get(f"/api/photo/{ids[0]}"), 404)


def test_folders_of_dead_servers_are_removed_at_start(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    dead = tmp_path / f"{FOLDER_PREFIX}{gone.pid}-abc123"
    alive = tmp_path / f"{FOLDER_PREFIX}{os.getppid()}-abc123"  # a running process: kept
    other = tmp_path / "dslrify-serve-notes"  # not a server's folder name: kept
    for folder in (dead, alive, other):
        (folder / "x").mkdir(parents=True)
        (folder / "x" / "upload").write_bytes(b"\0" * 1000)
    with client_for(tmp_path) as c:
        assert c.get("/api/models").status_code == 200
        assert not dead.exists() and alive.exists() and other.exists()


def test_busy_port_is_one_line_error() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(DslrifyError) as e:
            bind_socket("127.0.0.1", port)
    assert str(e.value) == f"port {port} is in use, choose another with --port"
    free = bind_socket("127.0.0.1", 0)  # a free port binds and listens
    free.close()


# --- over a real socket ------------------------------------------------------------------------------------


def test_bad_requests_over_uvicorn_get_json_4xx(tmp_path: Path) -> None:
    cases = [
        ("POST", "/api/upload", multipart(FILE_HEADER + b"\r\nX-Long: " + b"a" * 100_000, b"x"), MULTIPART),
        ("POST", "/api/upload", b"garbage" * 1000, MULTIPART),
        ("POST", "/api/upload?name=bomb.png", claim_png(20_000, 20_000, 1, 0), {}),
        ("POST", "/api/upload", jpeg_with_metadata(), {"origin": "http://evil.example"}),
        ("GET", "/api/models", b"", {"host": "evil.example"}),
    ]
    with live_server(tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        for method, path, body, headers in cases:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                assert 400 <= r.status < 500, (path, r.status)
                assert r.getheader("content-type", "").startswith("application/json")
                assert set(json.loads(r.read())) == {"error", "advice"}
            finally:
                conn.close()
