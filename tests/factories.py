"""Test data builders with traits (status, type, jurisdiction, age)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from app.admin.models import StaffUser
from app.dsr import deadlines
from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from app.platform.models import Account
from app.security import hash_password

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"
_HASH = None


def make_staff(role: str = "officer", email: str | None = None, **kw) -> StaffUser:
    global _HASH
    if _HASH is None:
        _HASH = hash_password(PASSWORD)
    user = StaffUser(email=email or f"{role}{next(_seq)}@staff.test", role=role, password_hash=_HASH, **kw)
    db.session.add(user)
    db.session.commit()
    return user


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
