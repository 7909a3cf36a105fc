"""The browser-test infrastructure proven before the console's pages exist: Debian's headless
Chromium, driven by Playwright, reads the control plane run as processes (tests/browser/conftest.py)."""

from __future__ import annotations

import struct
import subprocess

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, SCREENSHOTS, UPDATE_SCREENSHOTS, VIEWER_TIMEZONE, screenshot_dir
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


def test_a_named_screenshot_is_1280_by_800_and_stays_out_of_the_work_tree(page, screenshot, monkeypatch):
    docs_before = _git_status("docs")
    page.set_viewport_size({"width": 800, "height": 600})
    page.goto("/healthz")

    path = screenshot(page, "smoke-healthz")

    assert png_size(path) == (1280, 800)
    assert not path.is_relative_to(REPO_ROOT), path
    assert _git_status("docs") == docs_before
    with pytest.raises(ValueError):
        screenshot(page, "../escape")
    monkeypatch.setenv(UPDATE_SCREENSHOTS, "1")
    assert screenshot_dir(path.parent) == SCREENSHOTS == REPO_ROOT / "docs" / "screenshots"


def _git_status(*paths: str) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *paths], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout
