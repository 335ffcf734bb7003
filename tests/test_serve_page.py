"""``dslrify serve``'s page in headless Chromium: upload, compare, download, re-render, fit, errors.

Needs Playwright's Python package and Debian's ``/usr/bin/chromium`` (never ``playwright install``):
skipped, with the reason, when either is missing. The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from serve_support import MAKE, MODEL, jpeg_with_metadata, live_server, srgb_icc

REPO = Path(__file__).resolve().parents[1]
DEMO_PHOTO = REPO / "assets" / "demo" / "phone.jpg"
SCREENSHOT = REPO / "docs" / "images" / "serve.png"
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 860, "height": 830}


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, Any, str, list[str]]]:
    """(playwright sync_api, a page, the server's URL, problems seen: 4xx/5xx answers, console errors)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip)")
    with live_server(tmp_path / "server") as url, sync_api.sync_playwright() as pw:
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
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            problems: list[str] = []
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            # Console errors, except "Failed to load resource", which repeats an answer listed above.
            page.on(
                "console",
                lambda m: (
                    problems.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    else None
                ),
            )
            yield sync_api, page, url, problems
        finally:
            browser.close()


def test_page_in_headless_chromium(browser_page: tuple[Any, Any, str, list[str]], tmp_path: Path) -> None:
    sync_api, page, url, problems = browser_page
    photo = tmp_path / "phone photo.jpg"
    photo.write_bytes(jpeg_with_metadata((960, 640), DEMO_PHOTO if DEMO_PHOTO.exists() else None))
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if "/api/upload" in r.url else None)
    page.goto(url)
    sync_api.expect(page.locator("#model option")).not_to_have_count(0)
    assert page.locator("#model").input_value() == MODEL
    accept = page.locator("#files").get_attribute("accept") or ""
    assert ".heic" in accept.split(",")

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

    # The side-by-side toggle switches the view.
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
    assert problems == []  # no 404 (the favicon included), no CSP violation, no script error


def test_portrait_fits_and_error_cards_have_only_live_buttons(
    browser_page: tuple[Any, Any, str, list[str]], tmp_path: Path
) -> None:
    sync_api, page, url, problems = browser_page
    portrait = tmp_path / "portrait.jpg"  # stored 960 x 640, EXIF orientation 6: upright 640 x 960
    portrait.write_bytes(jpeg_with_metadata((960, 640), orientation=6))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a JPEG")
    page.goto(url)
    sync_api.expect(page.locator("#model option")).not_to_have_count(0)

    page.set_input_files("#files", str(portrait))
    card = page.locator(".card").first
    sync_api.expect(card.locator(".status")).to_contain_text("640 × 960", timeout=30_000)
    sync_api.expect(card.locator("img.after")).to_have_js_property("complete", True)
    stage = card.locator(".stage").bounding_box()
    assert stage is not None
    assert stage["height"] <= VIEWPORT["height"] and stage["width"] < stage["height"]
    assert abs(stage["width"] / stage["height"] - 640 / 960) < 0.02  # the photo's shape, unstretched

    page.set_input_files("#files", str(bad))
    bad_card = page.locator(".card.error")
    sync_api.expect(bad_card.locator(".status")).to_contain_text("broken.jpg is not a photo")
    visible = [b.inner_text() for b in bad_card.locator("button, a.button").all() if b.is_visible()]
    assert visible == ["Remove"]
    bad_card.locator(".remove").click()
    sync_api.expect(page.locator(".card.error")).to_have_count(0)
    assert [p for p in problems if "/api/upload" not in p] == []  # only the refused upload's 400


def save_screenshot(page: Any, tmp_path: Path) -> None:
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
