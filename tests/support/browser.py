"""Playwright (sync API) driving Debian's Chromium, with an outside-request guard.

Provides:

- session fixture ``browser`` -> ``playwright.sync_api.Browser``: headless ``/usr/bin/chromium``
  launched once per session. Playwright cannot download its own browsers here, so the Debian
  build is launched explicitly. Missing binary or failed launch -> ``require_service``.
- fixture ``outside_requests`` -> ``OutsideAttempts``: URLs the browser tried to fetch from
  non-loopback hosts. Every such request is aborted; the test fails at teardown unless it
  consumed them with ``outside_requests.take()`` (a test that expects one asserts on it).
- fixture ``browser_context`` -> ``BrowserContext``: fresh per test, viewport 1280x800,
  10 s default timeout, with the outside-request guard routed on every request.
- fixture ``page`` -> ``Page`` in that context. If the test failed, a screenshot is saved to
  ``test-artifacts/<test-name>.png`` under the rootdir.

The sync API must not run inside a running asyncio loop; plain pytest tests are fine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Route,
    sync_playwright,
)

from tests.support.services import OutsideAttempts, is_loopback_host, require_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # Headless Chromium run as root refuses to start with its sandbox.
    "--no-sandbox",
    "--disable-gpu",
    # Without these, Chromium calls out to Google services (refused here, many at a time).
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
DEFAULT_TIMEOUT_MS = 10_000
# Schemes that never leave the machine; anything else is checked by host.
LOCAL_SCHEMES = {"about", "blob", "data", "chrome", "chrome-extension", "devtools", "file"}

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can tell, at teardown, whether the
    # test failed (the pattern from pytest's "making test result information available in
    # fixtures" example).
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _test_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_reports, {})
    return any(r.failed for r in reports.values() if r.when in ("setup", "call"))


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(_playwright: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium, launched once per session."""
    if not os.access(CHROMIUM, os.X_OK):
        require_service("chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        browser = _playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
    except Exception as exc:
        # Playwright appends its whole call log; the first line names the cause.
        require_service("chromium", f"launch failed: {str(exc).splitlines()[0]}")
    yield browser
    browser.close()


@pytest.fixture
def outside_requests() -> Iterator[OutsideAttempts]:
    """Blocked browser requests to non-loopback hosts; any left untaken fail the test."""
    record = OutsideAttempts(kind="browser")
    yield record
    record.check()


@pytest.fixture
def browser_context(
    browser: Browser, outside_requests: OutsideAttempts
) -> Iterator[BrowserContext]:
    """A fresh context per test whose requests may only go to loopback hosts."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)

    def guard(route: Route, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme in LOCAL_SCHEMES or is_loopback_host(url.hostname):
            route.continue_()
            return
        # The app must never make a browser fetch outside hosts (e.g. remote images in a
        # rendered email would leak to trackers). Abort it and let the test fail later.
        outside_requests.record(request.url)
        route.abort("blockedbyclient")

    context.route("**/*", guard)
    yield context
    context.close()


@pytest.fixture
def page(browser_context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context; screenshot to test-artifacts/ when the test failed."""
    page = browser_context.new_page()
    yield page
    if _test_failed(request.node) and not page.is_closed():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
        target = Path(request.config.rootpath) / "test-artifacts" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(target), full_page=True)
        except Exception as exc:  # a screenshot must never mask the real failure
            print(f"could not save screenshot {target}: {exc}")
        else:
            print(f"screenshot saved: {target}")
