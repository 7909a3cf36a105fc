"""Fixtures of the browser tests: the control plane run for real and a headless Chromium.

`control_plane` is tests/integration's `ControlPlane`: the API server and a worker as processes
on a throwaway platform database and a throwaway tenant database, the real engine on a private
backend with the local cluster's shared baseline on it, so that a signup made in the browser
reaches ACTIVE. It and the browser live as long as this package's tests run (package scope):
the processes do not linger through the rest of the suite.

The browser is Debian's Chromium (/usr/bin/chromium, installed by scripts/browser.sh) driven by
Playwright's sync API with that executable; Playwright's own browser download is never used.
A missing browser fails the tests, it never skips them. Each test gets a fresh context (no
cookies shared between tests) whose base URL is the API's, at 1280x800 in a time zone that is
not UTC. A test whose call fails leaves a screenshot of its page in its tmp directory; the
path is printed in the failure's report.

`screenshot(page, name)` saves a named screenshot of the main pages: into docs/screenshots/
only when CAMELEER_UPDATE_SCREENSHOTS=1 (someone regenerates them on purpose and commits
them), else into the session's tmp directory, so that a plain test run never dirties the
work tree with PNGs whose bytes differ in every run (timestamps, ids).

Browser test modules carry `pytestmark = pytest.mark.browser`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.integration.control_plane import REPO_ROOT, ControlPlane, throwaway_tenant_database

CHROMIUM = Path("/usr/bin/chromium")
# Playwright already passes the switches of an automated browser (no first-run, no background
# networking, no component updates); these are for a machine without GPU or outside network.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-sync", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 800}
# Not UTC: a page that forgets to show times in the viewer's zone is seen to.
VIEWER_TIMEZONE = "Europe/Berlin"
DEFAULT_TIMEOUT_MS = 15_000
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
UPDATE_SCREENSHOTS = "CAMELEER_UPDATE_SCREENSHOTS"
# A signup goes from request to ACTIVE in seconds, not minutes (as in the engine tests).
WORKER_ENV = {"CAMELEER_READINESS_POLL_SECONDS": "1", "CAMELEER_READINESS_TIMEOUT_SECONDS": "120",
              "CAMELEER_TENANT_ROLLOUT_TIMEOUT": "40s"}


# --------------------------------------------------------------------------- the control plane


@pytest.fixture(scope="package")
def control_plane(tmp_path_factory) -> Iterator[ControlPlane]:
    slugs: list[str] = []  # their database roles are dropped with the tenant database
    with throwaway_tenant_database(slugs) as tenant_database_url:
        plane = ControlPlane(tmp_path_factory.mktemp("control-plane"), tenant_database_url, worker_env=WORKER_ENV)
        try:
            with plane.serving() as problems:
                plane.bring_up_shared_baseline()
                plane.start_worker()
                yield plane
        finally:
            slugs.extend(plane.slugs)
    assert not problems, "cleanup:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="package")
def chromium_executable() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no browser at {CHROMIUM}: scripts/browser.sh installs Debian's chromium "
                    "(scripts/setup.sh runs it)")
    return CHROMIUM


@pytest.fixture(scope="package")
def browser(chromium_executable):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_executable), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser, control_plane):
    context = browser.new_context(base_url=control_plane.base_url, viewport=VIEWPORT,
                                  timezone_id=VIEWER_TIMEZONE, locale="en-GB")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context, tmp_path):
    # tmp_path is requested so that a failure's screenshot has a place (pytest_runtest_makereport).
    return context.new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    page = getattr(item, "funcargs", {}).get("page") if report.when == "call" and report.failed else None
    if page is not None:
        report.sections.append(("browser", _failure_screenshot(page, item.funcargs["tmp_path"])))
    return report


def _failure_screenshot(page, tmp_path: Path) -> str:
    path = tmp_path / "failure.png"
    try:
        page.screenshot(path=path, full_page=True)
    except Exception as exc:  # noqa: BLE001 - the test's own failure is the one to report
        return f"no screenshot of {page.url}: {exc}"
    return f"screenshot of {page.url} at the failure: {path}"


# --------------------------------------------------------------------------- named screenshots


def screenshot_dir(tmp_dir: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """docs/screenshots when CAMELEER_UPDATE_SCREENSHOTS=1, else `tmp_dir`."""
    return SCREENSHOTS if environ.get(UPDATE_SCREENSHOTS) == "1" else tmp_dir


def save_screenshot(page, name: str, directory: Path) -> Path:
    """The page's viewport at 1280x800 as `directory/<name>.png`."""
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise ValueError(f"screenshot name {name!r}: lower-case words joined by '-'")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.set_viewport_size(VIEWPORT)
    page.screenshot(path=path, animations="disabled", caret="hide")
    return path


@pytest.fixture(scope="session")
def screenshot(tmp_path_factory) -> Callable[..., Path]:
    """`screenshot(page, name)`: save_screenshot into docs/screenshots or the tmp directory."""
    directory = screenshot_dir(tmp_path_factory.mktemp("screenshots"))

    def save(page, name: str) -> Path:
        path = save_screenshot(page, name, directory)
        print(f"screenshot {name}: {path}")
        return path

    return save
