"""Weak and common staff passwords are refused, with the reason, everywhere a password is set."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.security import verify_password
from app.staff.models import StaffUser
from app.staff.passwords import password_problem
from tests.factories import PASSWORD
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401

COMMON = ["password1234", "123456789012", "qwertyuiop12", "iloveyou1234", "letmeinplease"]


@pytest.mark.parametrize("weak", COMMON)
def test_password_policy_refuses_common_passwords_and_says_why(weak):
    problem = password_problem(weak)
    assert problem and "too easy to guess" in problem


def test_password_policy_refuses_a_password_built_from_the_email():
    assert password_problem("jane.doe@staff.test", "jane.doe@staff.test")
    assert password_problem("Jane.Doe.2024", "jane.doe@staff.test")
    assert password_problem("short") == "Use at least 12 characters."


def test_password_policy_accepts_strong_passphrases():
    for strong in (PASSWORD, "a much better passphrase", "vN3#qT9!wLz2@pR7"):
        assert password_problem(strong, "someone@staff.test") is None, strong


@pytest.mark.parametrize("weak", COMMON[:2])
def test_change_password_refuses_a_common_password(app, weak):
    client, user = staff_client(app, "officer")
    resp = client.post_form(
        "/admin/account/password", {"current_password": PASSWORD, "new_password": weak, "confirm_password": weak}
    )
    assert resp.status_code == 200 and "too easy to guess" in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert verify_password(user.password_hash, PASSWORD)


def _create(app, email: str, password: str):
    return app.test_cli_runner().invoke(
        args=["staff", "create", email, "--role", "officer", "--password-stdin"], input=password + "\n"
    )


@pytest.mark.parametrize("weak", COMMON[:2])
def test_cli_staff_create_refuses_a_common_password(app, weak):
    result = _create(app, "cli.person@staff.test", weak)
    assert result.exit_code != 0 and "too easy to guess" in result.output
    assert db.session.execute(select(StaffUser).where(StaffUser.email == "cli.person@staff.test")).first() is None


def test_cli_staff_create_accepts_a_strong_password(app):
    result = _create(app, "cli.person@staff.test", "tangerine orbit cello marsh")
    assert result.exit_code == 0, result.output
    assert db.session.execute(select(StaffUser).where(StaffUser.email == "cli.person@staff.test")).scalar_one()
