"""Helpers shared by the dashboard tests.

The ``app`` fixture keeps one app context pushed for the whole test, and Flask reuses it for every
test-client request, so ``g`` (where Flask-Login caches the signed-in user and Flask-WTF the CSRF
token) would leak from one request, or one client, to the next. In production ``g`` lives for a
single request; ``fresh_g`` restores that.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import g
from sqlalchemy import select

from app.extensions import db
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


def mailed_links(address: str, needle: str) -> list[str]:
    """Links containing ``needle`` in the mail stored for ``address`` (the outbox), oldest first."""
    from app.extensions import db
    from app.mail.models import OutgoingMail

    stmt = select(OutgoingMail).where(OutgoingMail.to_addr == address).order_by(OutgoingMail.id)
    bodies = [m.body_text for m in db.session.execute(stmt).scalars()]
    return [link for body in bodies for link in re.findall(r"https?://\S+", body) if needle in link]


def enrol_with_link(client, link: str, password: str = PASSWORD):
    """Follow an enrolment link as its owner: scan the secret, type the password and a code. Returns
    the response and the secret now enrolled."""
    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.get_data(as_text=True)).group(1)
    resp = client.post_form(path, {"password": password, "totp": pyotp.TOTP(secret).now()})
    return resp, secret


def act(client, dsr, action, **fields):
    """Post one action from the request's detail page, follow the redirect, return the page."""
    resp = client.post_form(
        f"/admin/requests/{dsr.reference}/action", {"action": action, **fields}, page=f"/admin/requests/{dsr.reference}"
    )
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    return page
