"""Fixtures for the security suite: the browser fixtures of ``tests/browser`` reused as they are, a
per-request ``g`` (see ``tests/functional/admin_support.py``) and small login helpers.
"""

from __future__ import annotations

import pytest

from tests.browser_fixtures import CHROMIUM  # noqa: F401
from tests.conftest import CsrfClient
from tests.factories import PASSWORD, make_staff, totp_code
from tests.functional.admin_support import fresh_g, login  # noqa: F401


@pytest.fixture
def admin_client(app) -> CsrfClient:
    """A test client signed in as an admin (the most powerful role, so every route is reachable)."""
    return login(CsrfClient(app.test_client()), make_staff("admin"))


@pytest.fixture
def officer_client(app) -> CsrfClient:
    return login(CsrfClient(app.test_client()), make_staff("officer"))


def browser_login(page, base: str, user, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/login")
    page.fill("#email", user.email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: not url.endswith("/admin/login"))
    if page.url.endswith("/admin/login/totp"):
        page.fill("#totp", totp_code(user))
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/admin/login" not in url)
