"""Server-side staff sessions: a copied cookie opens nothing once its session has ended.

The attacker of finding 1 holds a copy of a staff member's cookie and replays it from another browser
(another User-Agent). Each test checks the copy works while the session is live (the control), ends
the session the way the product does (logout, password change, deactivation, role change, second
factor change, idle timeout, absolute lifetime), and then replays the copy: a GET is sent to sign
in, a POST (a note on a request, with a valid CSRF token) is refused with 401 and changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.staff.models import StaffSession
from tests.conftest import CSRF_RE, CsrfClient
from tests.factories import PASSWORD, make_request, make_staff, totp_code
from tests.functional.admin_support import fresh_g, login  # noqa: F401

OTHER_UA = {"User-Agent": "Mozilla/5.0 (attacker's laptop)"}


def cookie_of(client) -> str:
    return client.get_cookie(client.application.config["SESSION_COOKIE_NAME"]).value


def copy_of(app, client) -> CsrfClient:
    """A second browser holding a copy of ``client``'s session cookie."""
    thief = CsrfClient(app.test_client())
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie_of(client))
    return thief


def note_count() -> int:
    return len(db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.note_added")).all())


def post_note(client, ref: str):
    # The login page (or, signed in, the dashboard it sends you to) gives any cookie a valid CSRF token.
    page = client.get("/admin/login", follow_redirects=True).get_data(as_text=True)
    match = CSRF_RE.search(page)
    data = {"csrf_token": match.group(1) or match.group(2), "action": "note", "note": "written with a stolen cookie"}
    return client.post(f"/admin/requests/{ref}/action", data=data, headers=OTHER_UA)


def assert_works(client, ref: str) -> None:
    assert client.get("/admin/requests", headers=OTHER_UA).status_code == 200
    before = note_count()
    assert post_note(client, ref).status_code == 303
    assert note_count() == before + 1


def assert_refused(client, ref: str) -> None:
    resp = client.get("/admin/requests", headers=OTHER_UA)
    assert resp.status_code == 302 and "/admin/login" in resp.headers["Location"]
    before = note_count()
    assert post_note(client, ref).status_code == 401
    assert note_count() == before


@pytest.fixture
def dsr(app):
    return make_request("pending_review")


def signed_in(app, role: str = "officer", user=None):
    user = user or make_staff(role)
    return login(CsrfClient(app.test_client()), user), user


def test_copied_cookie_after_logout_is_refused(app, dsr):
    client, _user = signed_in(app)
    thief = copy_of(app, client)
    assert_works(thief, dsr.reference)
    assert client.post_form("/admin/logout", {}, page="/admin/").status_code == 302
    assert_refused(thief, dsr.reference)
    assert_refused(client, dsr.reference)


def test_session_id_is_random_and_stored_only_as_a_hash(app):
    client, user = signed_in(app)
    raw = app.session_interface.get_signing_serializer(app).loads(cookie_of(client))["_user_id"]
    assert len(raw) >= 40 and str(user.id) != raw
    (record,) = db.session.execute(select(StaffSession).where(StaffSession.staff_id == user.id)).scalars()
    assert record.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    columns = [str(getattr(record, c.key)) for c in StaffSession.__table__.columns]
    assert not any(raw in value for value in columns)


def test_old_style_cookie_with_id_and_version_is_refused(app, dsr):
    client, user = signed_in(app)
    forged = app.session_interface.get_signing_serializer(app).loads(cookie_of(client))
    forged["_user_id"] = f"{user.id}:1"  # what the user loader accepted before sessions were server-side
    thief = CsrfClient(app.test_client())
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], app.session_interface.get_signing_serializer(app).dumps(forged))
    assert_refused(thief, dsr.reference)


def test_copied_cookie_after_password_change_is_refused_and_the_changer_continues(app, dsr):
    client, user = signed_in(app)
    elsewhere, _ = signed_in(app, user=user)
    stolen, stolen_elsewhere = copy_of(app, client), copy_of(app, elsewhere)
    assert_works(stolen, dsr.reference)
    new = "tangerine orbit cello marsh"
    resp = client.post_form(
        "/admin/account/password", {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
    )
    assert resp.status_code == 302
    assert_works(client, dsr.reference)  # this browser carries on, under a new session id
    assert_refused(stolen, dsr.reference)  # the copy of its old cookie does not
    assert_refused(stolen_elsewhere, dsr.reference)
    assert_refused(elsewhere, dsr.reference)


def test_copied_cookie_after_deactivation_is_refused(app, dsr):
    admin_client, _admin = signed_in(app, "admin")
    client, user = signed_in(app)
    stolen = copy_of(app, client)
    assert_works(stolen, dsr.reference)
    resp = admin_client.post_form(f"/admin/staff/{user.id}/active", {"active": "0"}, page="/admin/staff")
    assert resp.status_code == 303
    assert_refused(stolen, dsr.reference)
    admin_client.post_form(f"/admin/staff/{user.id}/active", {"active": "1"}, page="/admin/staff")
    assert_refused(stolen, dsr.reference)  # reactivation brings no old session back


def test_copied_cookie_after_role_change_is_refused(app, dsr):
    admin_client, _admin = signed_in(app, "admin")
    client, user = signed_in(app)
    stolen = copy_of(app, client)
    assert_works(stolen, dsr.reference)
    resp = admin_client.post_form(f"/admin/staff/{user.id}/role", {"role": "admin"}, page="/admin/staff")
    assert resp.status_code == 303
    assert_refused(stolen, dsr.reference)
    assert_refused(client, dsr.reference)


def test_copied_cookie_after_second_factor_change_is_refused(app, dsr):
    client, user = signed_in(app)
    elsewhere, _ = signed_in(app, user=user)
    stolen = copy_of(app, client)
    assert_works(stolen, dsr.reference)
    client.get("/admin/account/totp")
    db.session.refresh(user)
    secret = user.totp_pending_secret
    assert client.post_form("/admin/account/totp", {"totp": pyotp.TOTP(secret).now()}).status_code == 200
    db.session.refresh(user)
    assert user.totp_enabled
    assert_works(client, dsr.reference)
    assert_refused(stolen, dsr.reference)
    assert_refused(elsewhere, dsr.reference)
    # ... and turning it off again ends the others too.
    again, _ = signed_in(app, user=user)
    stolen_again = copy_of(app, client)
    resp = client.post_form("/admin/account/totp/disable", {"current_password": PASSWORD}, page="/admin/account/totp")
    assert resp.status_code == 302
    db.session.refresh(user)
    assert not user.totp_enabled
    assert_works(client, dsr.reference)
    assert_refused(stolen_again, dsr.reference)
    assert_refused(again, dsr.reference)


def _age(user, **fields) -> None:
    for record in db.session.execute(select(StaffSession).where(StaffSession.staff_id == user.id)).scalars():
        for name, delta in fields.items():
            setattr(record, name, getattr(record, name) - delta)
    db.session.commit()


def test_session_ends_after_the_idle_timeout(app, dsr):
    client, user = signed_in(app)
    stolen = copy_of(app, client)
    idle = timedelta(minutes=app.config["STAFF_SESSION_IDLE_MINUTES"])
    _age(user, last_seen_at=idle - timedelta(minutes=2), created_at=idle)
    assert_works(stolen, dsr.reference)  # used within the timeout: it renews
    _age(user, last_seen_at=idle + timedelta(minutes=1), created_at=idle)
    assert_refused(stolen, dsr.reference)
    assert_refused(client, dsr.reference)
    record = db.session.execute(select(StaffSession).where(StaffSession.staff_id == user.id)).scalar_one()
    assert record.end_reason == "idle" and record.ended_at is not None


def test_session_ends_after_its_absolute_lifetime_however_busy(app, dsr):
    client, user = signed_in(app)
    stolen = copy_of(app, client)
    lifetime = timedelta(hours=app.config["STAFF_SESSION_MAX_HOURS"])
    _age(user, created_at=lifetime - timedelta(minutes=1))
    assert_works(stolen, dsr.reference)
    _age(user, created_at=timedelta(minutes=2))  # still busy (seen just now), but past the lifetime
    assert_refused(stolen, dsr.reference)
    assert_refused(client, dsr.reference)


@pytest.fixture
def reauth_admin(app):
    client, admin = signed_in(app, user=make_staff("admin", totp=True))
    _age(admin, reauth_at=timedelta(minutes=app.config["STAFF_REAUTH_MINUTES"], seconds=1))
    return client, admin


def test_staff_management_needs_a_recent_password_and_second_factor(app, reauth_admin):
    from app.dsr.models import AppSetting

    client, admin = reauth_admin
    resp = client.get("/admin/staff")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/admin/reauth")
    resp = client.post_form("/admin/settings", {"require_totp": "y"}, page="/admin/account/password")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/admin/reauth")
    assert db.session.get(AppSetting, "require_totp") is None  # nothing changed
    # The password alone is not enough when the account has a second factor.
    page = client.post_form("/admin/reauth?next=/admin/staff", {"password": PASSWORD})
    assert page.status_code == 200 and client.get("/admin/staff").status_code == 302
    wrong = client.post_form("/admin/reauth?next=/admin/staff", {"password": "not it at all", "totp": totp_code(admin)})
    assert wrong.status_code == 200
    ok = client.post_form("/admin/reauth?next=/admin/staff", {"password": PASSWORD, "totp": totp_code(admin)})
    assert ok.status_code == 302 and ok.headers["Location"] == "/admin/staff"
    assert client.get("/admin/staff").status_code == 200
    assert client.post_form("/admin/settings", {"require_totp": "y"}, page="/admin/staff").status_code == 303
    assert db.session.get(AppSetting, "require_totp").value == "1"


def test_reauthentication_is_not_needed_for_everyday_pages(app, reauth_admin):
    client, _admin = reauth_admin
    for path in ("/admin/", "/admin/requests", "/admin/audit", "/admin/account/password"):
        assert client.get(path).status_code == 200, path
