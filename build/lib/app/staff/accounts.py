"""Creating staff accounts, and changes to one that end its sessions: password, role, active, resets.

Where a change leaves someone who must have a second factor without one (a new admin, a promotion,
a reset), the service issues an enrolment token and returns it: the caller mails the link (the admin
pages) or prints it (``flask staff create``).
"""

from __future__ import annotations

from sqlalchemy import select

from app.audit import Actor, record_event
from app.extensions import db
from app.models_base import utcnow
from app.security import hash_password
from app.staff import policy, second_factor, sessions
from app.staff.models import StaffUser


class AccountError(ValueError):
    """A change the rules refuse; the message says why."""


def _enrolment_if_needed(user: StaffUser, by: Actor) -> str | None:
    if user.active and not user.totp_enabled and policy.second_factor_required(user):
        return second_factor.issue_enrolment(user, by)
    return None


def create(email: str, role: str, password: str, by: Actor, *, temporary: bool) -> tuple[StaffUser, str | None]:
    """A new account (``temporary``: the password must be changed at first sign-in); returns it and the
    raw enrolment token when its role needs a second factor."""
    email = email.strip().lower()
    if db.session.execute(select(StaffUser.id).where(StaffUser.email == email)).first():
        raise AccountError("A staff member with that email already exists.")
    user = StaffUser(
        email=email,
        role=role,
        password_hash=hash_password(password),
        must_change_password=temporary,
        password_changed_at=None if temporary else utcnow(),
    )
    db.session.add(user)
    db.session.flush()
    record_event("staff.created", by, data={"staff_id": user.id, "role": role})
    return user, _enrolment_if_needed(user, by)


def change_own_password(user: StaffUser, new_password: str, *, ip: str | None, user_agent: str | None) -> None:
    """Set a password the policy accepted. Every session of the user ends; this browser continues in
    a new one (``sessions.renew``), so no copy of an earlier cookie stays valid."""
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    sessions.renew(user, "password_changed", ip=ip, user_agent=user_agent)
    record_event("staff.password_changed", Actor.staff(user))


def change_role(user: StaffUser, role: str, by: StaffUser) -> str | None:
    old, user.role = user.role, role
    sessions.end_all(user, "role_changed")  # the new rights apply from a fresh sign-in
    record_event("staff.role_changed", Actor.staff(by), data={"staff_id": user.id, "from": old, "to": role})
    return _enrolment_if_needed(user, Actor.staff(by))


def set_active(user: StaffUser, active: bool, by: StaffUser) -> None:
    user.active = active
    sessions.end_all(user, "reactivated" if active else "deactivated")
    record_event("staff.reactivated" if active else "staff.deactivated", Actor.staff(by), data={"staff_id": user.id})


def reset_password(user: StaffUser, temporary_password: str, by: StaffUser) -> str | None:
    """An admin's reset: a temporary password to hand over, to be changed at the next sign-in."""
    user.password_hash = hash_password(temporary_password)
    user.must_change_password = True
    user.failed_logins = 0
    user.last_failed_login_at = None
    sessions.end_all(user, "password_reset")
    record_event("staff.password_reset", Actor.staff(by), data={"staff_id": user.id})
    return _enrolment_if_needed(user, Actor.staff(by))


def require_second_factor_for_all(on: bool, by: StaffUser) -> list[tuple[StaffUser, str]]:
    """The admin setting. Turning it on issues an enrolment token to every active staff member without
    a second factor (returned, for the caller to mail); until they enrol they cannot use the dashboard."""
    if on and not by.totp_enabled:
        raise AccountError("Set up two-step sign-in for your own account first.")
    policy.set_require_all(on)
    record_event("settings.changed", Actor.staff(by), data={policy.REQUIRE_TOTP_KEY: "1" if on else "0"})
    if not on:
        return []
    missing = db.session.execute(
        select(StaffUser).where(StaffUser.active.is_(True), StaffUser.totp_enabled.is_(False))
    ).scalars()
    return [(user, second_factor.issue_enrolment(user, Actor.staff(by))) for user in list(missing)]
