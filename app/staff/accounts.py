"""Changes to a staff account that end its sessions: password, role, active, an admin's reset."""

from __future__ import annotations

from app.audit import Actor, record_event
from app.models_base import utcnow
from app.security import hash_password
from app.staff import sessions
from app.staff.models import StaffUser


def change_own_password(user: StaffUser, new_password: str, *, ip: str | None, user_agent: str | None) -> None:
    """Set a password the policy accepted. Every session of the user ends; this browser continues in
    a new one (``sessions.renew``), so no copy of an earlier cookie stays valid."""
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    sessions.renew(user, "password_changed", ip=ip, user_agent=user_agent)
    record_event("staff.password_changed", Actor.staff(user))


def change_role(user: StaffUser, role: str, by: StaffUser) -> None:
    old, user.role = user.role, role
    sessions.end_all(user, "role_changed")  # the new rights apply from a fresh sign-in
    record_event("staff.role_changed", Actor.staff(by), data={"staff_id": user.id, "from": old, "to": role})


def set_active(user: StaffUser, active: bool, by: StaffUser) -> None:
    user.active = active
    sessions.end_all(user, "reactivated" if active else "deactivated")
    record_event("staff.reactivated" if active else "staff.deactivated", Actor.staff(by), data={"staff_id": user.id})


def reset_password(user: StaffUser, temporary_password: str, by: StaffUser) -> None:
    """An admin's reset: a temporary password to hand over, to be changed at the next sign-in."""
    user.password_hash = hash_password(temporary_password)
    user.must_change_password = True
    user.failed_logins = 0
    user.last_failed_login_at = None
    sessions.end_all(user, "password_reset")
    record_event("staff.password_reset", Actor.staff(by), data={"staff_id": user.id})
