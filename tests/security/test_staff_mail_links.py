"""Every link in staff mail is built from PORTAL_BASE_URL, never from the request's Host header."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.mail.models import OutgoingMail
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401

LINK = re.compile(r"https?://[^\s\"'<>]+")


def _mail_links(template: str) -> list[str]:
    mails = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == template)).scalars().all()
    assert mails, f"no {template} mail"
    return [link for m in mails for link in LINK.findall(m.body_text + (m.body_html or ""))]


def test_invite_links_ignore_a_forged_host_header(app):
    client, _admin = staff_client(app, "admin")
    token = client.csrf_from("/admin/staff")
    # The attacker's Host header reaches the app as it is; the test client files cookies by host, so
    # the signed-in session is handed to that host too.
    client.set_cookie("session", client.get_cookie("session").value, domain="evil.example")
    for host in ("evil.example", "evil.example:8080"):
        resp = client.post(
            "/admin/staff",
            data={"csrf_token": token, "email": f"new{len(host)}@staff.test", "role": "officer", "send_invite": "y"},
            headers={"X-Forwarded-Host": "evil.example"},
            environ_overrides={"HTTP_HOST": host},
        )
        assert resp.status_code == 200, resp.status_code
    links = _mail_links("admin_staff_invite")
    assert links and all(link.startswith(app.config["PORTAL_BASE_URL"] + "/") for link in links), links
    assert "http://portal.test/admin/login" in links
    assert not any("evil" in link for link in links)
