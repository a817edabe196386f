"""Checking what a staff member types: password, second-factor code, current password.

Each check answers with an ``Outcome`` the view renders; failures are throttled (``throttle``),
counted on the account (``failed_logins``, shown to its owner at the next sign-in) and audited with
codes and ids only: an unknown address is "unknown address" plus a keyed hash, never the text typed.
A failed attempt costs the same whether or not the email is known (``verify_password`` hashes against
a dummy), and the answer is the same too, so the form does not reveal who is staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.audit import Actor, record_event
from app.extensions import db
from app.models_base import utcnow
from app.security import hash_password, keyed_hash, needs_rehash, verify_password
from app.staff import policy, throttle
from app.staff.models import StaffUser
from app.staff.second_factor import verify_code


@dataclass(frozen=True)
class Outcome:
    # "ok", "second_factor" (password right, code next), "enrol" (password right, but a second factor
    # is required and not set up: no session; enrolment is by the emailed link), "refused", "wait"
    status: str
    user: StaffUser | None = None
    wait: int = 0
    method: str = "password"  # what proved the last step: "password", "totp" or "recovery"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def find_staff(email: str) -> StaffUser | None:
    return db.session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()


def actor_for(user: StaffUser | None) -> Actor:
    """The account's own id and stored email, or "unknown address": never the text that was typed."""
    return Actor.staff(user) if user is not None else Actor.anonymous()


def _failure(user: StaffUser | None, email: str, attempt: throttle.Attempt, reason: str) -> Outcome:
    delay = attempt.delay
    data: dict = {"reason": reason, "known": user is not None}
    if user is None:  # tells repeated tries on one unknown address apart without storing it
        data["email_key"] = keyed_hash("staff-login-email", email)
    else:
        user.failed_logins = (user.failed_logins or 0) + 1
        user.last_failed_login_at = utcnow()
    record_event("staff.login_failed", actor_for(user), data=data)
    if delay:
        record_event("staff.login_delayed", actor_for(user), data={**data, "seconds": delay})
    return Outcome("refused", user)


def check_password(email: str, password: str, ip: str | None) -> Outcome:
    """The sign-in form: "ok", "second_factor" when a code must follow, "refused" or "wait"."""
    key = throttle.login_key(email, ip)
    user = find_staff(email)
    wait = throttle.wait_seconds(key)
    if wait:
        return Outcome("wait", wait=wait)
    attempt = throttle.begin(key)
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:  # ``ok`` is False without a user
        return _failure(user, email, attempt, "inactive" if ok else "password")
    throttle.forgive(attempt)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    if user.totp_enabled and user.totp_secret:
        return Outcome("second_factor", user)
    if policy.second_factor_required(user):
        record_event("staff.login_refused", Actor.staff(user), data={"reason": "second_factor_missing"})
        return Outcome("enrol", user)
    return Outcome("ok", user)


def check_second_factor(user: StaffUser, code: str, ip: str | None) -> Outcome:
    """The code step of sign-in, throttled under the same key as the password step."""
    key = throttle.login_key(user.email, ip)
    wait = throttle.wait_seconds(key)
    if wait:
        return Outcome("wait", user, wait=wait)
    attempt = throttle.begin(key)
    method = verify_code(user, code)
    if method is None:
        return _failure(user, user.email, attempt, "totp")
    throttle.forgive(attempt)
    return Outcome("ok", user, method=method)


def check_current_password(user: StaffUser, password: str, code: str | None = None) -> Outcome:
    """A signed-in user proving it is them (password change, second factor off, re-authentication):
    limited per user, whichever session or address it comes from; ``code`` is checked too when given."""
    key = throttle.account_key(user.id)
    wait = throttle.wait_seconds(key)
    if wait:
        return Outcome("wait", user, wait=wait)
    attempt = throttle.begin(key)
    if not verify_password(user.password_hash, password):
        return _failure(user, user.email, attempt, "current_password")
    if code is not None and verify_code(user, code) is None:
        return _failure(user, user.email, attempt, "totp")
    throttle.clear(key)
    return Outcome("ok", user)


def signed_in(user: StaffUser, ip: str | None) -> tuple[int, datetime | None]:
    """Reset the counters after a successful sign-in; returns the failures its owner should hear of."""
    failures, last = user.failed_logins or 0, user.last_failed_login_at
    user.failed_logins = 0
    user.last_failed_login_at = None
    user.last_login_at = utcnow()
    throttle.clear(throttle.login_key(user.email, ip))
    return failures, last


def wait_message(seconds: int) -> str:
    unit = "second" if seconds == 1 else "seconds"
    return f"Too many failed attempts for this account from here. Try again in {seconds} {unit}."


def failures_message(count: int, last: datetime | None) -> str | None:
    if not count:
        return None
    noun = "attempt" if count == 1 else "attempts"
    when = f", the last at {last:%Y-%m-%d %H:%M} UTC" if last else ""
    return (
        f"There were {count} failed sign-in {noun} on your account since you last signed in{when}. "
        "If that was not you, tell an admin."
    )
