"""The second factor: required for admins by default, enrolled only through an emailed (or printed)
link, a QR code to scan, one-time recovery codes, and an admin's reset that forces re-enrolment."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.config import ConfigError, load_config
from app.extensions import db
from app.models_base import utcnow
from app.staff.models import StaffSession, StaffToken, StaffUser
from tests.conftest import CsrfClient
from tests.factories import PASSWORD, make_staff, totp_code
from tests.functional.admin_support import enrol_with_link, fresh_g, login, mailed_links  # noqa: F401

NEEDS = "needs two-step sign-in"


def password_only(client, user, password: str = PASSWORD):
    return client.post_form("/admin/login", {"email": user.email, "password": password})


def signed_in(client) -> bool:
    return client.get("/admin/requests").status_code == 200


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.event == name)).scalars())


def test_config_requires_a_second_factor_for_admins_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("TOTP_REQUIRED_ROLES", raising=False)
    assert load_config(tmp_path, {"SECRET_KEY": "k"})["TOTP_REQUIRED_ROLES"] == {"admin"}
    monkeypatch.setenv("TOTP_REQUIRED_ROLES", "")
    assert load_config(tmp_path, {"SECRET_KEY": "k"})["TOTP_REQUIRED_ROLES"] == frozenset()
    monkeypatch.setenv("TOTP_REQUIRED_ROLES", "admin, Officer")
    assert load_config(tmp_path, {"SECRET_KEY": "k"})["TOTP_REQUIRED_ROLES"] == {"admin", "officer"}
    monkeypatch.setenv("TOTP_REQUIRED_ROLES", "admin,root")
    with pytest.raises(ConfigError, match="root"):
        load_config(tmp_path, {"SECRET_KEY": "k"})


def test_admin_login_without_a_second_factor_is_refused_by_default(app):
    admin = make_staff("admin", totp=False)
    client = CsrfClient(app.test_client())
    resp = password_only(client, admin)
    assert resp.status_code == 200 and NEEDS in resp.get_data(as_text=True)
    assert not signed_in(client)
    assert db.session.execute(select(StaffSession)).first() is None  # no session was opened at all
    assert [e.data["reason"] for e in events("staff.login_refused")] == ["second_factor_missing"]
    # Officers are not required to by default; nor is anyone with TOTP_REQUIRED_ROLES empty.
    assert password_only(CsrfClient(app.test_client()), make_staff("officer")).status_code == 302
    app.config["TOTP_REQUIRED_ROLES"] = frozenset()
    assert password_only(CsrfClient(app.test_client()), admin).status_code == 302


def test_a_session_of_a_newly_required_role_cannot_use_the_dashboard(app):
    officer = make_staff("officer")
    client = login(CsrfClient(app.test_client()), officer)
    assert signed_in(client)
    app.config["TOTP_REQUIRED_ROLES"] = frozenset({"admin", "officer"})
    resp = client.get("/admin/requests")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/account/totp").status_code == 302  # no in-session enrolment with a password session
    record = db.session.execute(select(StaffSession).where(StaffSession.staff_id == officer.id)).scalar_one()
    assert record.end_reason == "second_factor_required"


def _create_admin(app, email: str = "new.admin@staff.test") -> tuple[StaffUser, str]:
    client = login(CsrfClient(app.test_client()), make_staff("admin"))
    page = client.post_form("/admin/staff", {"email": email, "role": "admin"}, page="/admin/staff")  # no invite box
    assert page.status_code == 200
    temp = re.search(r'id="temporary-password">([^<]+)<', page.get_data(as_text=True)).group(1)
    return db.session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one(), temp


def test_enrolment_needs_the_emailed_link_not_just_the_password(app):
    new, temp = _create_admin(app)
    client = CsrfClient(app.test_client())
    # The password alone signs nobody in, and there is no page to enrol from without a session.
    assert NEEDS in password_only(client, new, temp).get_data(as_text=True)
    assert client.get("/admin/account/totp").status_code == 302
    (link,) = mailed_links(new.email, "/admin/enrol/")
    assert link.startswith(app.config["PORTAL_BASE_URL"] + "/admin/enrol/")
    # The link alone is not enough either: it needs the account's password.
    path = link.removeprefix(app.config["PORTAL_BASE_URL"])
    page = client.get(path).get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    wrong = client.post_form(path, {"password": "not the password", "totp": pyotp.TOTP(secret).now()})
    assert wrong.status_code == 200 and not signed_in(client)
    resp, secret = enrol_with_link(client, link, temp)
    assert resp.status_code == 200 and 'id="recovery-codes"' in resp.get_data(as_text=True)
    db.session.refresh(new)
    assert new.totp_enabled and new.totp_secret == secret
    # Signed in now, and first of all made to choose their own password.
    resp = client.get("/admin/requests")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/account/password")
    # The link works once.
    assert CsrfClient(app.test_client()).get(path).status_code == 404
    token = db.session.execute(select(StaffToken).where(StaffToken.staff_id == new.id)).scalar_one()
    assert token.used_at is not None and token.token_hash not in link and len(token.token_hash) == 64


def test_enrolment_links_expire_and_only_the_newest_works(app):
    new, temp = _create_admin(app)
    (first,) = mailed_links(new.email, "/admin/enrol/")
    admin_client = login(CsrfClient(app.test_client()), make_staff("admin"))
    admin_client.post_form(f"/admin/staff/{new.id}/totp-reset", {}, page="/admin/staff")
    second = mailed_links(new.email, "/admin/enrol/")[-1]
    client = CsrfClient(app.test_client())
    base = app.config["PORTAL_BASE_URL"]
    assert client.get(first.removeprefix(base)).status_code == 404  # voided by the newer one
    token = db.session.execute(select(StaffToken).where(StaffToken.staff_id == new.id)).scalar_one()
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.get(second.removeprefix(base)).status_code == 404
    assert client.get("/admin/enrol/not-a-token").status_code == 404


def test_flask_staff_create_prints_the_enrolment_link_for_a_required_role(app):
    result = app.test_cli_runner().invoke(
        args=["staff", "create", "cli.admin@staff.test", "--role", "admin", "--password-stdin"],
        input="tangerine orbit cello marsh\n",
    )
    assert result.exit_code == 0, result.output
    link = re.search(r"https?://\S+/admin/enrol/\S+", result.output).group(0)
    assert link.startswith(app.config["PORTAL_BASE_URL"])
    user = db.session.execute(select(StaffUser).where(StaffUser.email == "cli.admin@staff.test")).scalar_one()
    client = CsrfClient(app.test_client())
    resp, _secret = enrol_with_link(client, link, "tangerine orbit cello marsh")
    assert resp.status_code == 200 and signed_in(client)
    # An officer (not required by default) gets no link.
    officer = app.test_cli_runner().invoke(
        args=["staff", "create", "cli.officer@staff.test", "--role", "officer", "--password-stdin"],
        input="tangerine orbit cello marsh\n",
    )
    assert officer.exit_code == 0 and "/admin/enrol/" not in officer.output
    # The operator can print a new link for an account that lost its authenticator.
    again = app.test_cli_runner().invoke(args=["staff", "enrolment-link", user.email])
    assert again.exit_code == 0 and "/admin/enrol/" in again.output
    db.session.refresh(user)
    assert not user.totp_enabled and not signed_in(client)


def test_setup_page_shows_a_qr_code_as_a_data_uri_under_the_csp(app):
    client = login(CsrfClient(app.test_client()), make_staff("officer"))
    resp = client.get("/admin/account/totp")
    html = resp.get_data(as_text=True)
    assert re.search(r'<img class="qr" src="data:image/svg\+xml[^"]+"', html)
    csp = resp.headers["Content-Security-Policy"]
    assert "img-src 'self' data:" in csp and "unsafe-inline" not in csp
    assert "<style" not in html and " style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)


def test_recovery_codes_work_once_each(app):
    admin = make_staff("admin")
    client = login(CsrfClient(app.test_client()), admin)
    page = client.post_form("/admin/account/recovery-codes", {}, page="/admin/account/totp")
    codes = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", page.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10

    def with_code(code: str):
        c = CsrfClient(app.test_client())
        assert password_only(c, admin).headers["Location"].endswith("/admin/login/totp")
        return c, c.post_form("/admin/login/totp", {"totp": code})

    c, resp = with_code(codes[0].upper().replace("-", " "))  # typed loosely: case and separators do not matter
    assert resp.status_code == 302 and signed_in(c)
    _c, again = with_code(codes[0])
    assert again.status_code == 200 and "did not work" in again.get_data(as_text=True)
    c, resp = with_code(codes[1])
    assert signed_in(c)
    assert [e.data["left"] for e in events("staff.recovery_code_used")] == [9, 8]
    # New codes replace the old ones.
    page = client.post_form("/admin/account/recovery-codes", {}, page="/admin/account/totp")
    assert page.status_code == 200
    _c, old = with_code(codes[2])
    assert old.status_code == 200


def test_admin_reset_of_a_second_factor_forces_enrolment_through_an_emailed_link(app):
    target = make_staff("admin")
    old_secret = target.totp_secret
    victim_session = login(CsrfClient(app.test_client()), target)
    admin = login(CsrfClient(app.test_client()), make_staff("admin"))
    resp = admin.post_form(f"/admin/staff/{target.id}/totp-reset", {}, page="/admin/staff")
    assert resp.status_code == 303
    db.session.refresh(target)
    assert not target.totp_enabled and target.totp_secret is None
    assert not signed_in(victim_session)  # every session of theirs ended
    client = CsrfClient(app.test_client())
    assert NEEDS in password_only(client, target).get_data(as_text=True)
    (link,) = mailed_links(target.email, "/admin/enrol/")
    resp, new_secret = enrol_with_link(client, link)
    assert resp.status_code == 200 and signed_in(client) and new_secret != old_secret
    (ev,) = events("staff.totp_reset")
    assert ev.data == {"staff_id": target.id}
    # The old authenticator's codes no longer sign anyone in.
    fresh = CsrfClient(app.test_client())
    password_only(fresh, target)
    assert fresh.post_form("/admin/login/totp", {"totp": pyotp.TOTP(old_secret).now()}).status_code == 200
    assert not signed_in(fresh)
    # An admin cannot reset their own second factor.
    me = db.session.execute(select(StaffUser).where(StaffUser.role == "admin", StaffUser.id != target.id)).scalar()
    admin.post_form(f"/admin/staff/{me.id}/totp-reset", {}, page="/admin/staff")
    db.session.refresh(me)
    assert me.totp_enabled


def test_a_required_second_factor_cannot_be_turned_off(app):
    admin = make_staff("admin")
    client = login(CsrfClient(app.test_client()), admin)
    resp = client.post_form("/admin/account/totp/disable", {"current_password": PASSWORD}, page="/admin/account/totp")
    assert resp.status_code == 302
    db.session.refresh(admin)
    assert admin.totp_enabled
    assert totp_code(admin)  # still enrolled, codes still come from it
