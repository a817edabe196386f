"""The portal's own records: requests, proposed corrections, emailed-link tokens, exports."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, ColumnElement, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.dsr.states import RequestStatus
from app.models_base import BigId, Model, UTCDateTime, utcnow

# Crockford's base32 without I, L, O, U: easy to read aloud and to type from a letter.
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"DSR-{chars[:4]}-{chars[4:]}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class DsrRequest(Model):
    __tablename__ = "dsr_request"
    __table_args__ = (
        Index("ix_dsr_request_status_due", "status", "due_at"),
        Index("ix_dsr_request_email_type", "email", "request_type"),
        Index("ix_dsr_request_type_received", "request_type", "received_at"),
        Index("ix_dsr_request_assignee_status", "assignee_id", "status"),
        # The dashboard's on-time chart: completed requests closed in the window, with their deadline,
        # straight from the index (the closed_at index alone visited every row's table page).
        Index("ix_dsr_request_status_closed", "status", "closed_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True, default=new_reference)
    request_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.UNVERIFIED.value)
    # The subject's details, until the request is minimised (``CLOSED_REQUEST_GRACE_DAYS`` after it
    # closes): then only ``email_hash`` (a keyed HMAC of the normalised address) is left of them.
    email: Mapped[str | None] = mapped_column(String(254))
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    jurisdiction: Mapped[str] = mapped_column(String(8))
    details: Mapped[str | None] = mapped_column(Text, default="")
    # How the request reached us (CCPA regs section 7101 "manner"): web, email, letter, phone, api, agent.
    channel: Mapped[str] = mapped_column(String(16), default="web", server_default="web")
    # Identity verified another way than the emailed link (staff intake): method and evidence.
    verification_method: Mapped[str | None] = mapped_column(String(200))
    verification_evidence: Mapped[str | None] = mapped_column(Text)
    # Seeded by ``seed-demo``: never fulfilled unless a staff member approves or retries it explicitly.
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    minimised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    original_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # Waiting for the subject since (ask for information, identity), for reminders.
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subject_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    hold_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hold_pauses_clock: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)

    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    denial_code: Mapped[str | None] = mapped_column(String(32))
    denial_text: Mapped[str | None] = mapped_column(Text)
    # How a completed request ended for the subject: ``completed`` or ``no_data`` (we held nothing).
    outcome: Mapped[str | None] = mapped_column(String(16))
    # DELETION_REQUIRES_SECOND_APPROVER: the first officer's approval, waiting for a second one.
    first_approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    first_approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_request.id", ondelete="SET NULL"))
    # The tag of the request's reply address (``privacy+<reply_token>@...``, app.mailbox.replies): mail to
    # it joins this request's thread. Random, made when the first message that carries it is queued.
    reply_token: Mapped[str | None] = mapped_column(String(32), unique=True)

    # Fulfilment bookkeeping, mirrored from the job for the dashboard.
    job_id: Mapped[str | None] = mapped_column(String(64))
    progress_percent: Mapped[int] = mapped_column(Integer, default=0)
    progress_rows: Mapped[int] = mapped_column(Integer, default=0)
    progress_note: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The deletion plan staff saw when approving, and the completion report.
    plan: Mapped[dict | None] = mapped_column(JSON)
    report: Mapped[dict | None] = mapped_column(JSON)

    corrections: Mapped[list[CorrectionItem]] = relationship(
        back_populates="dsr", cascade="all, delete-orphan", order_by="CorrectionItem.id"
    )
    identifiers: Mapped[list[RequestIdentifier]] = relationship(
        back_populates="dsr", cascade="all, delete-orphan", order_by="RequestIdentifier.id"
    )
    notes: Mapped[list[RequestNote]] = relationship(
        back_populates="dsr", cascade="all, delete-orphan", order_by="RequestNote.id"
    )
    messages: Mapped[list[RequestMessage]] = relationship(
        back_populates="dsr", cascade="all, delete-orphan", order_by="RequestMessage.id"
    )
    assignee = relationship("StaffUser", foreign_keys=[assignee_id])
    decided_by = relationship("StaffUser", foreign_keys=[decided_by_id])
    first_approved_by = relationship("StaffUser", foreign_keys=[first_approved_by_id])
    duplicate_of = relationship("DsrRequest", remote_side=[id])

    def __repr__(self) -> str:
        return f"<DsrRequest {self.reference} {self.request_type} {self.status}>"


def clock_running() -> ColumnElement[bool]:
    """SQL: the request's deadline clock is running (open and verified, not in a lawful pause). Every
    overdue and due-soon view and the reminders use this one definition."""
    from sqlalchemy import and_, not_

    from app.dsr.states import CLOCK_RUNNING

    return and_(
        DsrRequest.status.in_([s.value for s in CLOCK_RUNNING]),
        not_(and_(DsrRequest.status == RequestStatus.ON_HOLD.value, DsrRequest.hold_pauses_clock.is_(True))),
    )


def due_soon_window() -> timedelta:
    """How far ahead "due soon" looks (``DUE_SOON_DAYS``): the dashboard, the queue and the reminders."""
    from flask import current_app

    return timedelta(days=int(current_app.config["DUE_SOON_DAYS"]))


def due_soon(now: datetime) -> ColumnElement[bool]:
    """SQL: due from ``now`` to the end of the due-soon window (with ``clock_running``, a due-soon request)."""
    from sqlalchemy import and_

    return and_(DsrRequest.due_at >= now, DsrRequest.due_at < now + due_soon_window())


class CorrectionItem(Model):
    __tablename__ = "correction_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    # Both values go when the request is minimised; ``current_value`` is what the platform held before.
    proposed_value: Mapped[str | None] = mapped_column(String(254))
    current_value: Mapped[str | None] = mapped_column(String(254))
    decision: Mapped[str] = mapped_column(String(16), default="pending")  # pending/approved/rejected
    reject_reason: Mapped[str | None] = mapped_column(Text)
    # A new email address is applied only once it has confirmed a link sent to it.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(254))

    dsr: Mapped[DsrRequest] = relationship(back_populates="corrections")


class Token(Model):
    """An emailed link's secret. Only its SHA-256 is stored; each token has one purpose."""

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # verify / status / download
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    export_id: Mapped[int | None] = mapped_column(ForeignKey("export.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    # What the token confirms besides the request (an identifier or a correction item to confirm).
    identifier_id: Mapped[int | None] = mapped_column(ForeignKey("request_identifier.id", ondelete="CASCADE"))
    correction_id: Mapped[int | None] = mapped_column(ForeignKey("correction_item.id", ondelete="CASCADE"))

    dsr: Mapped[DsrRequest] = relationship()

    @staticmethod
    def generate() -> tuple[str, str]:
        raw = secrets.token_urlsafe(32)
        return raw, hash_token(raw)


class RequestIdentifier(Model):
    """Something staff add to find the subject: another email, an account id, a Stripe customer id.

    Only a ``verified`` identifier is acted on: an email once it has confirmed a link sent to it
    (``method`` = ``link``), anything once a staff member recorded why it is the subject's
    (``method`` = ``staff``, with ``justification``).
    """

    __tablename__ = "request_identifier"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # email / account_id / stripe_customer_id
    value: Mapped[str] = mapped_column(String(254))
    method: Mapped[str] = mapped_column(String(16))  # link / staff
    justification: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending / verified
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    dsr: Mapped[DsrRequest] = relationship(back_populates="identifiers")
    added_by = relationship("StaffUser")


class RequestNote(Model):
    """An internal staff note. It lives with the request (the audit trail records only that one was
    added) and goes when the request is minimised."""

    __tablename__ = "request_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    dsr: Mapped[DsrRequest] = relationship(back_populates="notes")
    author = relationship("StaffUser")


class RequestMessage(Model):
    """One message of the request's thread with the subject: ``direction`` ``out`` (staff to subject,
    also emailed) or ``in`` (the subject's answer, from the status page or by email)."""

    __tablename__ = "request_message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    via: Mapped[str] = mapped_column(String(16), default="web")  # web / email / staff
    kind: Mapped[str] = mapped_column(String(24), default="message")  # message / question / identity
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attachment_name: Mapped[str | None] = mapped_column(String(200))
    attachment_type: Mapped[str | None] = mapped_column(String(100))
    attachment_size: Mapped[int | None] = mapped_column(Integer)
    attachment_key: Mapped[str | None] = mapped_column(String(200))

    dsr: Mapped[DsrRequest] = relationship(back_populates="messages")
    author = relationship("StaffUser")


class Export(Model):
    """An access package on disk. ``status``: building, ready, expired, purged."""

    __tablename__ = "export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="building")
    filename: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    download_count: Mapped[int] = mapped_column(Integer, default=0)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    dsr: Mapped[DsrRequest] = relationship()


class AppSetting(Model):
    """Small admin-controlled switches (for example: require TOTP for all staff)."""

    __tablename__ = "app_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(254))


class ReleasedRecord(Model):
    """A record withheld from access packages by default (another person's data, GDPR Art. 15(4)) that an
    officer reviewed and released for this request: the next package built for it includes the record."""

    __tablename__ = "released_record"
    __table_args__ = (UniqueConstraint("request_id", "category", "record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[int] = mapped_column(BigId)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
