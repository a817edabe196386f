"""Server-side staff sessions: the cookie carries a random id, the database says whether it is live.

A signed cookie alone cannot be taken back: before this, a copy of it kept working after logout, from
any browser, renewed for 8 hours at each use. Now ``open_session`` stores the SHA-256 of a 256-bit
random id (Flask-Login keeps the id itself in the cookie, through ``StaffUser.get_id``), and
``resume`` accepts a cookie only while its record is live: not ended (logout, a password, second
factor, role or active change, an admin's reset), used within ``STAFF_SESSION_IDLE_MINUTES`` and
younger than ``STAFF_SESSION_MAX_HOURS`` however busy. Ending a record ends every copy of its cookie.

``reauth_at`` is when the password (and second factor) were last typed in this session, at sign-in
or on the re-authentication page; staff management and settings need it within
``STAFF_REAUTH_MINUTES`` (``is_fresh``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from flask import current_app, g
from sqlalchemy import select, update

from app.extensions import db
from app.models_base import rows_changed, utcnow
from app.staff.models import StaffSession, StaffUser

# Writing last_seen_at on every request would make every page a write; a minute is precise enough
# for a 30-minute idle timeout.
TOUCH_EVERY = timedelta(seconds=60)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def idle_timeout() -> timedelta:
    return timedelta(minutes=current_app.config["STAFF_SESSION_IDLE_MINUTES"])


def max_lifetime() -> timedelta:
    return timedelta(hours=current_app.config["STAFF_SESSION_MAX_HOURS"])


def reauth_window() -> timedelta:
    return timedelta(minutes=current_app.config["STAFF_REAUTH_MINUTES"])


def open_session(
    user: StaffUser, *, ip: str | None, user_agent: str | None, created_at: datetime | None = None
) -> StaffSession:
    """A new live session for ``user`` (added to the caller's transaction); its raw id is set on
    ``user.session_token`` for Flask-Login's ``login_user`` to put in the cookie, and nowhere else."""
    now = utcnow()
    raw = secrets.token_urlsafe(32)
    record = StaffSession(
        staff_id=user.id,
        user=user,
        token_hash=_hash(raw),
        created_at=created_at or now,
        last_seen_at=now,
        reauth_at=now,
        ip=(ip or "")[:45] or None,
        user_agent=(user_agent or "")[:200] or None,
    )
    db.session.add(record)
    user.session_token = raw
    g.staff_session = record
    return record


def resume(raw: str | None) -> StaffUser | None:
    """The user of the live session whose id is ``raw`` (from the cookie), or None. A session found
    idle or past its lifetime is ended here, so it stays ended."""
    g.staff_session = None
    if not isinstance(raw, str) or not _TOKEN.match(raw):
        return None  # also the "<id>:<version>" cookies of before server-side sessions
    record = db.session.execute(select(StaffSession).where(StaffSession.token_hash == _hash(raw))).scalar_one_or_none()
    if record is None or record.ended_at is not None:
        return None
    now = utcnow()
    reason = None
    if not record.user.active:
        reason = "deactivated"
    elif now - record.created_at > max_lifetime():
        reason = "expired"
    elif now - record.last_seen_at > idle_timeout():
        reason = "idle"
    if reason:
        end(record, reason)
        db.session.commit()
        return None
    if now - record.last_seen_at > TOUCH_EVERY:
        record.last_seen_at = now
        db.session.commit()
    record.user.session_token = raw
    g.staff_session = record
    return record.user


def current() -> StaffSession | None:
    """The session this request runs in (set by ``resume`` or ``open_session``)."""
    return g.get("staff_session")


def end(record: StaffSession, reason: str) -> None:
    if record.ended_at is None:
        record.ended_at = utcnow()
        record.end_reason = reason


def end_all(user: StaffUser, reason: str, keep: StaffSession | None = None) -> int:
    """End every live session of ``user`` but ``keep``; returns how many ended."""
    stmt = (
        update(StaffSession)
        .where(StaffSession.staff_id == user.id, StaffSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if keep is not None and keep.id is not None:
        stmt = stmt.where(StaffSession.id != keep.id)
    ended = rows_changed(db.session.execute(stmt))
    for record in db.session.identity_map.values():
        if isinstance(record, StaffSession) and record.staff_id == user.id and record is not keep:
            db.session.expire(record, ["ended_at", "end_reason"])
    return ended


def renew(user: StaffUser, reason: str, *, ip: str | None, user_agent: str | None) -> StaffSession:
    """After a credential change: end every session of ``user``, this one included, and carry on in a
    new one (new id, same absolute lifetime), so no copy of any earlier cookie stays valid."""
    old = current()
    end_all(user, reason)
    return open_session(user, ip=ip, user_agent=user_agent, created_at=old.created_at if old else None)


def is_fresh(record: StaffSession | None) -> bool:
    return record is not None and utcnow() - record.reauth_at <= reauth_window()


def mark_reauthenticated(record: StaffSession) -> None:
    record.reauth_at = utcnow()
