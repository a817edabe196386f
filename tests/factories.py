"""Test data builders with traits (status, type, jurisdiction, age)."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pyotp

from app.dsr import deadlines
from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from app.platform.models import Account
from app.security import hash_password
from app.staff.models import StaffUser

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"
_HASH = None


def make_staff(role: str = "officer", email: str | None = None, totp: bool | None = None, **kw) -> StaffUser:
    """A staff member whose password is ``PASSWORD``; ``totp=True``: with an enrolled authenticator
    (``totp_code(user)`` gives its codes). By default one is enrolled exactly when the configured
    ``TOTP_REQUIRED_ROLES`` (admin by default) require it, as a real account would have to be."""
    from app.staff.policy import required_by_config

    global _HASH
    if _HASH is None:
        _HASH = hash_password(PASSWORD)
    if totp is None:
        totp = role in required_by_config()
    if totp:
        kw.setdefault("totp_secret", pyotp.random_base32())
        kw.setdefault("totp_enabled", True)
    user = StaffUser(email=email or f"{role}{next(_seq)}@staff.test", role=role, password_hash=_HASH, **kw)
    db.session.add(user)
    db.session.commit()
    return user


_used_codes: set[tuple[str, str]] = set()


def totp_code(user: StaffUser) -> str:
    """A valid code from ``user``'s authenticator that this test run has not used yet: the app refuses a
    code twice, and the step before and after the current one are valid too (clock drift), so three
    sign-ins fit in each 30 seconds."""
    totp = pyotp.TOTP(user.totp_secret)
    now = time.time()
    for offset in (0, -30, 30):
        code = totp.at(now + offset)
        if (user.totp_secret, code) not in _used_codes:
            _used_codes.add((user.totp_secret, code))
            return code
    raise AssertionError("more than three sign-ins of one user within 30 seconds: no unused TOTP code left")


def make_request(
    status: RequestStatus | str = RequestStatus.PENDING_REVIEW,
    request_type: str = "access",
    jurisdiction: str = "gdpr",
    email: str | None = None,
    received_days_ago: float = 1,
    **kw,
) -> DsrRequest:
    """A request already in ``status`` (built directly; lifecycle tests use ``transition``)."""
    received = utcnow() - timedelta(days=received_days_ago)
    dsr = DsrRequest(
        request_type=request_type,
        status=RequestStatus(status).value,
        email=email or f"subject{next(_seq)}@example.com",
        full_name=kw.pop("full_name", "Sam Subject"),
        jurisdiction=jurisdiction,
        details=kw.pop("details", ""),
        received_at=received,
        **kw,
    )
    if RequestStatus(status) is not RequestStatus.UNVERIFIED:
        dsr.verified_at = received
        dsr.due_at = deadlines.due_date(jurisdiction, received)
        dsr.original_due_at = dsr.due_at
    db.session.add(dsr)
    db.session.commit()
    return dsr


def make_account(email: str | None = None, **kw) -> Account:
    acct = Account(email=email or f"acct{next(_seq)}@example.com", name=kw.pop("name", "Pat Platform"), **kw)
    db.session.add(acct)
    db.session.commit()
    return acct
