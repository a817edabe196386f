"""Staff accounts and what hangs off them: server-side sessions, recovery codes, enrolment links.

Secrets that prove something (session ids, recovery codes, enrolment tokens) are stored only as
SHA-256 hashes of 256-bit (tokens, sessions) or 79-bit (recovery codes) random values, so a copy of
the database opens no session and enrols no authenticator. The TOTP secret itself has to be kept as
it is to check codes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models_base import Model, UTCDateTime, utcnow


class Role(StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    AUDITOR = "auditor"


class StaffUser(Model):
    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.OFFICER.value)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Failed sign-ins (wrong password, code or current password) since the last successful one: shown
    # to the staff member when they next sign in, then reset. (Delays are per client: app.staff.throttle.)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The secret shown on a setup page, until a code from it confirms the enrolment.
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Set (not stored) by app.staff.sessions for the session this request runs in: Flask-Login keeps
    # ``get_id()`` in the cookie, and that must be the session id, so that ending the session record
    # ends the cookie too (Flask-Login's "alternative tokens").
    # Annotated for the type checker only: the ORM would try to map an annotation it sees at run time.
    if TYPE_CHECKING:
        session_token: str | None
    else:
        session_token = None

    # Flask-Login's user protocol (not UserMixin: its __eq__ compares get_id(), a per-session value).
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def get_id(self) -> str:
        if not self.session_token:
            raise RuntimeError("no staff session was opened for this user (app.staff.sessions.open_session)")
        return self.session_token

    @property
    def can_act(self) -> bool:
        return self.role in (Role.ADMIN, Role.OFFICER)

    def __repr__(self) -> str:
        return f"<StaffUser {self.email} {self.role}>"


class StaffSession(Model):
    """One sign-in. The cookie carries a random id; only its hash is here. A session ends at logout,
    on a password, second-factor, role or active change, after the idle timeout or the absolute
    lifetime: ``ended_at`` is set and the cookie opens nothing any more."""

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the password (and second factor) were last entered in this session: sign-in or re-authentication.
    reauth_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(24))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))

    user: Mapped[StaffUser] = relationship(lazy="joined")


class RecoveryCode(Model):
    """A one-time code that stands in for the authenticator at the second-factor step."""

    __tablename__ = "staff_recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffToken(Model):
    """A single-use, expiring link sent to a staff member (``purpose`` "enrol": second-factor enrolment)."""

    __tablename__ = "staff_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[StaffUser] = relationship()
