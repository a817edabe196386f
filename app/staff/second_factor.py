"""The second factor: TOTP, recovery codes, enrolment links, an admin's reset.

- **TOTP** (RFC 6238, one step of clock drift either way); a code is accepted once (Redis remembers
  used codes for two minutes), so someone who saw it cannot replay it.
- **Recovery codes**: ten per enrolment, 16 characters (79 bits) each, stored as SHA-256, each usable
  once at the second-factor step in place of a code; regenerating replaces them all.
- **Enrolment links**: where a second factor is required, setting one up needs proof of the staff
  member's mailbox (or, for ``flask staff create``, of operator access), not just their password: a
  single-use link, stored hashed, expiring after ``STAFF_ENROL_LINK_HOURS``. Issuing one voids the
  earlier ones.
- Turning the factor on or off ends the user's other sessions (``sessions.renew``); an admin's reset
  ends all of them, deletes the recovery codes and emails a new enrolment link.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, func, select, update

from app.audit import Actor, record_event
from app.extensions import db
from app.models_base import rows_changed, utcnow
from app.staff import sessions
from app.staff.models import RecoveryCode, StaffToken, StaffUser

TOTP_CODE = re.compile(r"^\d{6}$")
USED_CODE_SECONDS = 120  # longer than the three 30-second steps a code is valid in
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
RECOVERY_LENGTH = 16
ENROL = "enrol"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- TOTP -------------------------------------------------------------------------------------------


def verify_totp(user: StaffUser, code: str) -> bool:
    code = code.strip()
    if not user.totp_secret or not TOTP_CODE.match(code):
        return False
    if not pyotp.TOTP(user.totp_secret).verify(code, valid_window=1):
        return False
    from app.queue import get_redis

    return bool(get_redis().set(f"totp-used:{user.id}:{code}", "1", nx=True, ex=USED_CODE_SECONDS))


def verify_code(user: StaffUser, code: str) -> str | None:
    """What ``code`` proved: "totp", "recovery" (a recovery code, now used up), or None."""
    code = (code or "").strip()
    if TOTP_CODE.match(code):
        return "totp" if verify_totp(user, code) else None
    return "recovery" if use_recovery_code(user, code) else None


def setup_secret(user: StaffUser) -> str:
    """The secret to show on a setup page: kept server-side (never in the cookie) until a code confirms it."""
    if not user.totp_pending_secret:
        user.totp_pending_secret = pyotp.random_base32()
    return user.totp_pending_secret


def provisioning_uri(user: StaffUser, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="ChatGPTTech privacy")


def qr_data_uri(uri: str) -> str:
    """The setup link as a QR code, an SVG ``data:`` URI for an ``<img>`` (the CSP allows ``img-src data:``)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#111", light="#fff")


def confirm_setup(user: StaffUser, code: str, *, ip: str | None, user_agent: str | None) -> list[str] | None:
    """Turn the second factor on if ``code`` comes from the pending secret; returns the new recovery
    codes (to show once), or None. Every session of the user ends and this browser continues in a new
    one: a session opened with the password alone, or a copy of this cookie, must not outlive it."""
    secret = user.totp_pending_secret
    if not secret or not pyotp.TOTP(secret).verify((code or "").strip(), valid_window=1):
        return None
    user.totp_secret, user.totp_enabled, user.totp_pending_secret = secret, True, None
    sessions.renew(user, "second_factor_changed", ip=ip, user_agent=user_agent)
    record_event("staff.totp_enabled", Actor.staff(user))
    return new_recovery_codes(user)


def turn_off(user: StaffUser, *, ip: str | None, user_agent: str | None) -> None:
    _clear(user)
    sessions.renew(user, "second_factor_changed", ip=ip, user_agent=user_agent)
    record_event("staff.totp_disabled", Actor.staff(user))


def _clear(user: StaffUser) -> None:
    user.totp_enabled, user.totp_secret, user.totp_pending_secret = False, None, None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == user.id))


def reset(user: StaffUser, by: StaffUser | None) -> str:
    """An admin's (``by``) or the operator's (None: ``flask staff enrolment-link``) reset: the factor and
    recovery codes are gone, every session ends, and the staff member re-enrols through the link
    returned (the caller mails or prints it)."""
    actor = Actor.staff(by) if by is not None else Actor.system("cli")
    _clear(user)
    sessions.end_all(user, "second_factor_reset")
    record_event("staff.totp_reset", actor, data={"staff_id": user.id})
    return issue_enrolment(user, actor)


# --- recovery codes -----------------------------------------------------------------------------------


def _normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def new_recovery_codes(user: StaffUser) -> list[str]:
    """Replace ``user``'s recovery codes with ten new ones; returns them formatted, to show once."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == user.id))
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH)) for _ in range(RECOVERY_CODES)]
    for code in codes:
        db.session.add(RecoveryCode(staff_id=user.id, code_hash=_sha256(code)))
    record_event("staff.recovery_codes_issued", Actor.staff(user), data={"count": len(codes)})
    return ["-".join(c[i : i + 4] for i in range(0, RECOVERY_LENGTH, 4)) for c in codes]


def use_recovery_code(user: StaffUser, code: str) -> bool:
    """Spend one recovery code (an atomic update: two requests cannot both use it)."""
    code = _normalise(code)
    if len(code) != RECOVERY_LENGTH or set(code) - set(RECOVERY_ALPHABET) or not user.totp_enabled:
        return False
    used = rows_changed(
        db.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.staff_id == user.id,
                RecoveryCode.code_hash == _sha256(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )
    if used != 1:
        return False
    record_event("staff.recovery_code_used", Actor.staff(user), data={"left": recovery_codes_left(user)})
    return True


def recovery_codes_left(user: StaffUser) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.staff_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()


# --- enrolment links ----------------------------------------------------------------------------------


def issue_enrolment(user: StaffUser, by: Actor) -> str:
    """A new single-use enrolment token for ``user`` (earlier unused ones are void); returns it raw."""
    db.session.execute(
        delete(StaffToken).where(
            StaffToken.staff_id == user.id, StaffToken.purpose == ENROL, StaffToken.used_at.is_(None)
        )
    )
    raw = secrets.token_urlsafe(32)
    hours = current_app.config["STAFF_ENROL_LINK_HOURS"]
    db.session.add(
        StaffToken(
            staff_id=user.id, purpose=ENROL, token_hash=_sha256(raw), expires_at=utcnow() + timedelta(hours=hours)
        )
    )
    record_event("staff.enrolment_issued", by, data={"staff_id": user.id, "hours": hours})
    return raw


def enrolment_token(raw: str | None) -> StaffToken | None:
    """The live enrolment token ``raw`` names, for an active account, or None."""
    if not isinstance(raw, str) or not _TOKEN.match(raw):
        return None
    token = db.session.execute(
        select(StaffToken).where(StaffToken.token_hash == _sha256(raw), StaffToken.purpose == ENROL)
    ).scalar_one_or_none()
    if token is None or token.used_at is not None or token.expires_at <= utcnow():
        return None
    if not token.user.active or token.user.totp_enabled:  # enrolled since: the link replaces nothing
        return None
    return token


def spend_enrolment(token: StaffToken) -> bool:
    """Mark the token used (atomically: a link works once even when opened twice at the same moment)."""
    return (
        rows_changed(
            db.session.execute(
                update(StaffToken)
                .where(StaffToken.id == token.id, StaffToken.used_at.is_(None))
                .values(used_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )
