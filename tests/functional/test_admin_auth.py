"""Staff sign-in: lockout, TOTP, session invalidation, safe redirects, per-IP limit, audit."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from app.admin.auth import safe_next
from app.audit.models import AuditEvent
from app.dsr.models import AppSetting
from app.extensions import db
from app.staff.models import StaffUser
from tests.conftest import CsrfClient
from tests.factories import PASSWORD, make_staff
from tests.functional.admin_support import enrol_with_link, fresh_g, login, mailed_links  # noqa: F401


def events(name: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.event == name)).scalars())


def attempt(client, email: str, password: str, next_url: str | None = None):
    url = "/admin/login" + (f"?next={next_url}" if next_url else "")
    return client.post_form(url, {"email": email, "password": password})


def test_login_success_redirects_to_dashboard_and_is_audited(app, client):
    user = make_staff("officer", email="Officer@Staff.test".lower())
    resp = attempt(client, "  OFFICER@staff.test ", PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/")
    assert client.get("/admin/").status_code == 200
    assert [e.actor_id for e in events("staff.login")] == [user.id]
    db.session.refresh(user)
    assert user.last_login_at is not None


def test_login_wrong_password_and_unknown_email_answer_the_same(app, client):
    make_staff("officer", email="real@staff.test")
    known = attempt(client, "real@staff.test", "wrong password!").get_data(as_text=True)
    unknown = attempt(client, "ghost@staff.test", "wrong password!").get_data(as_text=True)
    strip = lambda html: html.replace("real@staff.test", "X").replace("ghost@staff.test", "X")  # noqa: E731
    import re

    token = re.compile(r'value="[^"]{40,}"')
    assert token.sub("", strip(known)) == token.sub("", strip(unknown))
    assert len(events("staff.login_failed")) == 2


def test_login_five_failures_delay_this_client_for_thirty_seconds(app, client, redis_conn):
    """No hard lock any more (an anonymous attacker could lock everyone out): a delay for this client
    and this account (tests/functional/test_staff_throttle.py has the rest)."""
    from app.staff import throttle

    user = make_staff("officer")
    for _ in range(5):
        assert attempt(client, user.email, "not the password").status_code == 200
    db.session.refresh(user)
    assert user.failed_logins == 5
    assert len(events("staff.login_delayed")) == 1 and events("staff.login_delayed")[0].data["seconds"] == 30
    # the right password is refused while the delay runs
    resp = attempt(client, user.email, PASSWORD)
    assert resp.status_code == 200 and "Try again in 30 seconds" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # after the delay the right password works again
    key = throttle.login_key(user.email, "127.0.0.1")
    redis_conn.hset(key, "at", repr(float(redis_conn.hget(key, "at")) - 31))
    assert attempt(client, user.email, PASSWORD).status_code == 302


def test_login_deactivated_user_cannot_sign_in(app, client):
    user = make_staff("officer", active=False)
    assert attempt(client, user.email, PASSWORD).status_code == 200
    assert client.get("/admin/").status_code == 302


def test_login_next_only_follows_same_origin_admin_paths(app, client):
    user = make_staff("auditor")
    resp = attempt(client, user.email, PASSWORD, next_url="/admin/reports")
    assert resp.headers["Location"].endswith("/admin/reports")
    for bad in ("https://evil.test/admin", "//evil.test/admin", "/\\evil.test", "/portal", "javascript:alert(1)"):
        assert safe_next(bad) is None
    assert safe_next("/admin/requests?status=failed") == "/admin/requests?status=failed"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_LOGIN": "8 per minute"}


def test_login_per_ip_rate_limit(app, client):
    statuses = [attempt(client, f"nobody{i}@staff.test", "x" * 12).status_code for i in range(10)]
    assert statuses[:8] == [200] * 8 and statuses[8] == 429


def test_password_change_ends_other_sessions(app, client):
    user = make_staff("officer")
    other = CsrfClient(app.test_client())
    attempt(client, user.email, PASSWORD)
    attempt(other, user.email, PASSWORD)
    new = "a much better passphrase"
    resp = client.post_form(
        "/admin/account/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert resp.status_code == 302
    assert client.get("/admin/").status_code == 200  # this session continues
    assert other.get("/admin/").status_code == 302  # the other one ended
    assert len(events("staff.password_changed")) == 1
    assert attempt(CsrfClient(app.test_client()), user.email, new).status_code == 302


def test_password_change_rejects_short_and_mismatched(app, client):
    user = make_staff("officer")
    attempt(client, user.email, PASSWORD)
    short = client.post_form(
        "/admin/account/password", {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"}
    )
    assert short.status_code == 200 and "at least 12" in short.get_data(as_text=True)


def _enable_totp(client, user) -> str:
    page = client.get("/admin/account/totp").get_data(as_text=True)
    import re

    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    resp = client.post_form("/admin/account/totp", {"totp": pyotp.TOTP(secret).now()})
    assert resp.status_code == 200 and 'id="recovery-codes"' in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.totp_enabled
    return secret


def test_totp_enrolment_then_login_needs_a_fresh_code(app, client):
    user = make_staff("officer")
    attempt(client, user.email, PASSWORD)
    secret = _enable_totp(client, user)
    client.post_form("/admin/logout", {}, page="/admin/account/password")
    fresh = CsrfClient(app.test_client())
    resp = attempt(fresh, user.email, PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/login/totp")
    assert fresh.get("/admin/").status_code == 302  # not signed in yet
    bad = fresh.post_form("/admin/login/totp", {"totp": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"})
    assert bad.status_code == 200
    code = pyotp.TOTP(secret).now()
    ok = fresh.post_form("/admin/login/totp", {"totp": code})
    assert ok.status_code == 302 and "/admin/login" not in ok.headers["Location"]
    assert fresh.get("/admin/").status_code == 200
    # the same code cannot be replayed by someone else who saw it
    third = CsrfClient(app.test_client())
    attempt(third, user.email, PASSWORD)
    assert third.post_form("/admin/login/totp", {"totp": code}).status_code == 200
    assert third.get("/admin/").status_code == 302


def test_totp_login_step_requires_password_first(app, client):
    assert client.get("/admin/login/totp").status_code == 302


def test_require_totp_setting_forces_enrolment(app, client):
    """The admin setting adds every role to TOTP_REQUIRED_ROLES: an officer without a second factor
    loses the dashboard (an open session included) until they enrol, through the link mailed to them."""
    admin = make_staff("admin")
    officer = make_staff("officer")
    other = CsrfClient(app.test_client())
    attempt(other, officer.email, PASSWORD)
    assert other.get("/admin/requests").status_code == 200
    login(client, admin)
    client.post_form("/admin/settings", {"require_totp": "y"}, page="/admin/staff")
    assert db.session.get(AppSetting, "require_totp").value == "1"
    resp = other.get("/admin/requests")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/login")
    refused = attempt(other, officer.email, PASSWORD)
    assert refused.status_code == 200 and "needs two-step sign-in" in refused.get_data(as_text=True)
    (link,) = mailed_links(officer.email, "/admin/enrol/")
    resp, _secret = enrol_with_link(other, link)
    assert resp.status_code == 200
    assert other.get("/admin/requests").status_code == 200


def test_logout_is_post_only_and_audited(app, client):
    user = make_staff("auditor")
    attempt(client, user.email, PASSWORD)
    assert client.get("/admin/logout").status_code == 405
    assert client.post_form("/admin/logout", {}, page="/admin/").status_code == 302
    assert client.get("/admin/").status_code == 302
    assert len(events("staff.logout")) == 1


def test_deactivation_ends_sessions_and_reset_forces_change(app, client):
    admin = make_staff("admin")
    officer = make_staff("officer")
    victim = CsrfClient(app.test_client())
    attempt(victim, officer.email, PASSWORD)
    login(client, admin)
    assert (
        client.post_form(f"/admin/staff/{officer.id}/active", {"active": "0"}, page="/admin/staff").status_code == 303
    )
    assert victim.get("/admin/").status_code == 302
    client.post_form(f"/admin/staff/{officer.id}/active", {"active": "1"}, page="/admin/staff")
    page = client.post_form(f"/admin/staff/{officer.id}/reset", {}, page="/admin/staff").get_data(as_text=True)
    import re

    temp = re.search(r'id="temporary-password">([^<]+)<', page).group(1)
    assert attempt(victim, officer.email, temp).status_code == 302
    resp = victim.get("/admin/requests")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/account/password")
    assert {e.event for e in db.session.execute(select(AuditEvent)).scalars()} >= {
        "staff.deactivated",
        "staff.reactivated",
        "staff.password_reset",
    }


def test_staff_create_with_invite_and_role_change(app, client):
    from app.mail.models import OutgoingMail

    admin = make_staff("admin")
    login(client, admin)
    page = client.post_form(
        "/admin/staff", {"email": "New.Person@staff.test", "role": "auditor", "send_invite": "y"}, page="/admin/staff"
    )
    assert page.status_code == 200 and "temporary-password" in page.get_data(as_text=True)
    new = db.session.execute(select(StaffUser).where(StaffUser.email == "new.person@staff.test")).scalar_one()
    assert new.role == "auditor" and new.must_change_password
    mail = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "admin_staff_invite")).scalar_one()
    assert mail.to_addr == "new.person@staff.test" and "auditor" in mail.body_text
    dup = client.post_form("/admin/staff", {"email": "new.person@staff.test", "role": "auditor"}, page="/admin/staff")
    assert dup.status_code == 400
    client.post_form(f"/admin/staff/{new.id}/role", {"role": "officer"}, page="/admin/staff")
    db.session.refresh(new)
    assert new.role == "officer"
    # an admin cannot demote or deactivate themselves
    client.post_form(f"/admin/staff/{admin.id}/role", {"role": "auditor"}, page="/admin/staff")
    client.post_form(f"/admin/staff/{admin.id}/active", {"active": "0"}, page="/admin/staff")
    db.session.refresh(admin)
    assert admin.role == "admin" and admin.active
