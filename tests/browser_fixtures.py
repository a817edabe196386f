"""Browser fixtures shared by every test package (registered once, from tests/conftest.py, so one Playwright
instance serves the whole session).

``live_server``: the test's ``app`` (same config, same database) served by a real werkzeug server in a
thread on 127.0.0.1; its value is the base URL and ``PORTAL_BASE_URL`` points there, so emailed links
work. ``browser_page``: a Playwright page in Debian's Chromium (skipped with a reason when absent).
Screenshots go to ``test-artifacts/`` (see ``screenshot_path``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PORTAL_BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture(scope="session")
def _chromium():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests (.ci/run installs chromium)")
        print(f"skipping browser tests: {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def fresh_page(browser, **context_options):
    """A page in a context of its own (cookies, storage), closed afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def browser_page(_chromium):
    with fresh_page(_chromium) as page:
        yield page


@pytest.fixture
def screenshot_path():
    """``screenshot_path("name")`` -> ``test-artifacts/name.png`` (directory created)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return lambda name: str(ARTIFACTS / f"{name}.png")
