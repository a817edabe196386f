"""The second factor: TOTP codes (RFC 6238, one step of clock drift either way), each accepted once."""

from __future__ import annotations

import re

import pyotp

from app.staff.models import StaffUser

TOTP_CODE = re.compile(r"^\d{6}$")
USED_CODE_SECONDS = 120  # longer than the three 30-second steps a code is valid in


def verify_totp(user: StaffUser, code: str) -> bool:
    """Check a code and refuse to accept the same code twice (someone who saw it cannot reuse it)."""
    code = code.strip()
    if (
        not user.totp_secret
        or not TOTP_CODE.match(code)
        or not pyotp.TOTP(user.totp_secret).verify(code, valid_window=1)
    ):
        return False
    from app.queue import get_redis

    return bool(get_redis().set(f"totp-used:{user.id}:{code}", "1", nx=True, ex=USED_CODE_SECONDS))


def verify_code(user: StaffUser, code: str) -> str | None:
    """What ``code`` proved ("totp"), or None."""
    return "totp" if verify_totp(user, code or "") else None


def setup_secret(user: StaffUser) -> str:
    """The secret to show on a setup page: kept server-side (never in the cookie) until a code confirms it."""
    if not user.totp_pending_secret:
        user.totp_pending_secret = pyotp.random_base32()
    return user.totp_pending_secret


def provisioning_uri(user: StaffUser, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="ChatGPTTech privacy")


def confirm_setup(user: StaffUser, code: str, *, ip: str | None, user_agent: str | None) -> bool:
    """Turn the second factor on if ``code`` comes from the pending secret. Every other session of the
    user ends (and this one continues under a new id): a session opened with the password alone, or a
    copy of this cookie, must not outlive the change."""
    from app.audit import Actor, record_event
    from app.staff import sessions

    secret = user.totp_pending_secret
    if not secret or not pyotp.TOTP(secret).verify((code or "").strip(), valid_window=1):
        return False
    user.totp_secret, user.totp_enabled, user.totp_pending_secret = secret, True, None
    sessions.renew(user, "second_factor_changed", ip=ip, user_agent=user_agent)
    record_event("staff.totp_enabled", Actor.staff(user))
    return True


def turn_off(user: StaffUser, *, ip: str | None, user_agent: str | None) -> None:
    from app.audit import Actor, record_event
    from app.staff import sessions

    user.totp_enabled, user.totp_secret, user.totp_pending_secret = False, None, None
    sessions.renew(user, "second_factor_changed", ip=ip, user_agent=user_agent)
    record_event("staff.totp_disabled", Actor.staff(user))
