"""Helpers shared by the dashboard tests.

The ``app`` fixture keeps one app context pushed for the whole test, and Flask reuses it for every
test-client request, so ``g`` (where Flask-Login caches the signed-in user and Flask-WTF the CSRF
token) would leak from one request, or one client, to the next. In production ``g`` lives for a
single request; ``fresh_g`` restores that.
"""

from __future__ import annotations

import pytest
from flask import g

from tests.conftest import CsrfClient
from tests.factories import PASSWORD, make_staff, totp_code


@pytest.fixture(autouse=True)
def fresh_g(app):
    def clear():
        for name in ("_login_user", "csrf_token", "staff_session"):
            g.pop(name, None)

    app.before_request_funcs.setdefault(None, []).insert(0, clear)


def login(client, user, password: str = PASSWORD):
    """Sign in with the password and, when the account has one, a code from its authenticator."""
    resp = client.post_form("/admin/login", {"email": user.email, "password": password})
    if resp.status_code == 302 and resp.headers["Location"].endswith("/admin/login/totp"):
        resp = client.post_form("/admin/login/totp", {"totp": totp_code(user)})
    assert resp.status_code == 302 and "/admin/login" not in resp.headers["Location"], resp.status_code
    return client


def staff_client(app, role: str) -> tuple[CsrfClient, object]:
    user = make_staff(role)
    return login(CsrfClient(app.test_client()), user), user
