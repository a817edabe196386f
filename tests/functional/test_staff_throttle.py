"""Guessing is slowed per account and client, and no anonymous attacker can lock the owner out.

Failures from one address for one account earn growing delays there (``STAFF_LOGIN_FREE_ATTEMPTS``
free, then ``STAFF_LOGIN_DELAY_SECONDS`` doubling up to ``STAFF_LOGIN_MAX_DELAY_SECONDS``); the owner
signing in from elsewhere is not delayed, and sees the failed attempts when they do. Wrong current
passwords on the password and second-factor pages count like failed sign-ins, limited per user.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.security import verify_password
from tests.conftest import CsrfClient
from tests.factories import PASSWORD, make_staff, totp_code
from tests.functional.admin_support import fresh_g, login  # noqa: F401

ATTACKER = {"REMOTE_ADDR": "203.0.113.9"}
OWNER = {"REMOTE_ADDR": "198.51.100.7"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STAFF_LOGIN_DELAY_SECONDS": 1, "STAFF_LOGIN_MAX_DELAY_SECONDS": 4}


def attempt(client, email: str, password: str, where: dict):
    token = client.csrf_from("/admin/login")
    return client.post(
        "/admin/login", data={"csrf_token": token, "email": email, "password": password}, environ_base=where
    )


def signed_in(resp) -> bool:
    return resp.status_code == 302 and "/admin/login" not in resp.headers["Location"]


def test_anonymous_failures_do_not_lock_out_the_real_password_from_another_client(app):
    user = make_staff("officer")
    attacker = CsrfClient(app.test_client())
    for _ in range(12):
        assert not signed_in(attempt(attacker, user.email, "a wrong guess!", ATTACKER))
    # Even the right password is refused from the attacker's address while its delay runs ...
    assert not signed_in(attempt(attacker, user.email, PASSWORD, ATTACKER))
    # ... but the owner, from their own address, signs straight in.
    owner = CsrfClient(app.test_client())
    assert signed_in(attempt(owner, user.email, PASSWORD, OWNER))
    assert owner.get("/admin/requests").status_code == 200


def test_delays_start_after_the_free_attempts_grow_and_pass(app):
    user = make_staff("officer")
    client = CsrfClient(app.test_client())
    for _ in range(app.config["STAFF_LOGIN_FREE_ATTEMPTS"]):
        page = attempt(client, user.email, "a wrong guess!", ATTACKER).get_data(as_text=True)
        assert "Try again in" not in page
    waiting = attempt(client, user.email, PASSWORD, ATTACKER)
    assert not signed_in(waiting) and "Try again in 1 second" in waiting.get_data(as_text=True)
    time.sleep(1.1)
    assert not signed_in(attempt(client, user.email, "still wrong!!", ATTACKER))  # a 6th failure: 2 s now
    assert "Try again in 2 seconds" in attempt(client, user.email, PASSWORD, ATTACKER).get_data(as_text=True)
    time.sleep(2.1)
    assert signed_in(attempt(client, user.email, PASSWORD, ATTACKER))
    assert len(db.session.execute(select(AuditEvent).where(AuditEvent.event == "staff.login_delayed")).all()) == 2


def test_an_unknown_address_is_delayed_exactly_like_a_known_one(app):
    make_staff("officer", email="real@staff.test")
    pages = []
    for email in ("real@staff.test", "ghost@staff.test"):
        client = CsrfClient(app.test_client())
        for _ in range(app.config["STAFF_LOGIN_FREE_ATTEMPTS"]):
            attempt(client, email, "a wrong guess!", ATTACKER)
        html = attempt(client, email, "a wrong guess!", ATTACKER).get_data(as_text=True)
        pages.append(re.sub(r'value="[^"]{40,}"', "", html.replace(email, "EMAIL")))
    assert pages[0] == pages[1] and "Try again in" in pages[0]


def test_staff_see_their_failed_attempts_on_the_next_successful_login(app):
    user = make_staff("officer")
    attacker = CsrfClient(app.test_client())
    for _ in range(3):
        attempt(attacker, user.email, "a wrong guess!", ATTACKER)
    owner = CsrfClient(app.test_client())
    assert signed_in(attempt(owner, user.email, PASSWORD, OWNER))
    page = owner.get("/admin/").get_data(as_text=True)
    assert "3 failed sign-in attempts" in page and "last at" in page
    owner.post_form("/admin/logout", {}, page="/admin/")
    assert signed_in(attempt(owner, user.email, PASSWORD, OWNER))
    assert "failed sign-in attempt" not in owner.get("/admin/").get_data(as_text=True)  # counted once, then reset


def test_wrong_second_factor_codes_count_and_are_delayed(app):
    user = make_staff("officer", totp=True)
    client = CsrfClient(app.test_client())
    attempt(client, user.email, PASSWORD, ATTACKER)
    wrong = "000000" if totp_code(user) != "000000" else "111111"
    for _ in range(app.config["STAFF_LOGIN_FREE_ATTEMPTS"]):
        resp = client.post_form("/admin/login/totp", {"totp": wrong}, environ_base=ATTACKER)
        assert resp.status_code == 200 and "That code did not work" in resp.get_data(as_text=True)
    # The right code is refused while the delay runs, and the half-done sign-in is dropped.
    resp = client.post_form("/admin/login/totp", {"totp": totp_code(user)}, environ_base=ATTACKER)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/").status_code == 302
    db.session.refresh(user)
    assert user.failed_logins == app.config["STAFF_LOGIN_FREE_ATTEMPTS"]
    owner = CsrfClient(app.test_client())
    assert signed_in(attempt(owner, user.email, PASSWORD, OWNER)) is False  # needs the code step
    ok = owner.post_form("/admin/login/totp", {"totp": totp_code(user)}, environ_base=OWNER)
    assert signed_in(ok)


def test_password_change_limits_wrong_current_passwords_per_user(app):
    user = make_staff("officer")
    client = login(CsrfClient(app.test_client()), user)
    other = login(CsrfClient(app.test_client()), user)  # a second session of the same user
    new = "tangerine orbit cello marsh"
    for _ in range(app.config["STAFF_LOGIN_FREE_ATTEMPTS"]):
        resp = client.post_form(
            "/admin/account/password",
            {"current_password": "a wrong guess!", "new_password": new, "confirm_password": new},
        )
        assert "That is not your current password." in resp.get_data(as_text=True)
    # The right current password is refused now, from this session and from another one of the same user.
    for c in (client, other):
        resp = c.post_form(
            "/admin/account/password", {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
        )
        assert resp.status_code == 200 and "Try again in" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert verify_password(user.password_hash, PASSWORD)
    assert user.failed_logins == app.config["STAFF_LOGIN_FREE_ATTEMPTS"]  # counted like failed sign-ins
    reasons = db.session.execute(select(AuditEvent.data).where(AuditEvent.event == "staff.login_failed")).scalars()
    assert [d["reason"] for d in reasons] == ["current_password"] * app.config["STAFF_LOGIN_FREE_ATTEMPTS"]
    time.sleep(1.1)
    resp = client.post_form(
        "/admin/account/password", {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
    )
    assert resp.status_code == 302


def test_second_factor_disable_limits_wrong_current_passwords_per_user(app):
    user = make_staff("officer", totp=True)
    client = login(CsrfClient(app.test_client()), user)
    for _ in range(app.config["STAFF_LOGIN_FREE_ATTEMPTS"]):
        client.post_form(
            "/admin/account/totp/disable", {"current_password": "a wrong guess!"}, page="/admin/account/totp"
        )
    resp = client.post_form(
        "/admin/account/totp/disable", {"current_password": PASSWORD}, page="/admin/account/totp", follow_redirects=True
    )
    assert "Try again in" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.totp_enabled and user.failed_logins == app.config["STAFF_LOGIN_FREE_ATTEMPTS"]
