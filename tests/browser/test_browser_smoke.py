"""The browser-test infrastructure proven before the console's pages exist: Debian's headless
Chromium, driven by Playwright, reads the control plane run as processes (tests/browser/conftest.py)."""

from __future__ import annotations

import struct
import subprocess

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    CHROMIUM,
    SCREENSHOTS,
    UPDATE_SCREENSHOTS,
    VIEWER_TIMEZONE,
    save_screenshot,
    screenshot_dir,
)
from tests.integration.control_plane import REPO_ROOT

pytestmark = pytest.mark.browser


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_browser_shows_the_services_openapi_document(page, browser):
    response = page.goto("/openapi.json")

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    expect(page.locator("body")).to_contain_text('"title":"Cameleer control plane"')
    expect(page.locator("body")).to_contain_text('"/readyz"')
    # Debian's Chromium, not a browser of Playwright's own download
    debian = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Chromium {browser.version} " in debian


def test_a_script_in_the_page_reads_the_services_readiness_from_its_origin(page, control_plane):
    page.goto("/healthz")
    expect(page.locator("body")).to_have_text('{"status":"ok"}')

    ready = page.evaluate("async () => (await fetch('/readyz')).json()")
    zone = page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone")

    assert ready["status"] == "ready" and ready["secrets"] == "unsealed"
    assert ready["schema"] == [control_plane.scalar("SELECT version_num FROM alembic_version")]
    assert zone == VIEWER_TIMEZONE


def test_a_named_screenshot_is_a_1280_by_800_png_of_the_page(page, tmp_path):
    page.set_viewport_size({"width": 800, "height": 600})
    page.goto("/healthz")

    path = save_screenshot(page, "smoke-healthz", tmp_path)

    assert path == tmp_path / "smoke-healthz.png"
    assert png_size(path) == (1280, 800)
    with pytest.raises(ValueError):
        save_screenshot(page, "../escape", tmp_path)


def test_named_screenshots_go_into_the_work_tree_only_when_asked(tmp_path):
    assert screenshot_dir(tmp_path, {}) == tmp_path
    assert screenshot_dir(tmp_path, {UPDATE_SCREENSHOTS: "0"}) == tmp_path
    assert screenshot_dir(tmp_path, {UPDATE_SCREENSHOTS: "1"}) == SCREENSHOTS == REPO_ROOT / "docs" / "screenshots"
