"""The portal's own records: requests, proposed corrections, emailed-link tokens, exports."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import UTCDateTime, utcnow

# Crockford's base32 without I, L, O, U: easy to read aloud and to type from a letter.
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"DSR-{chars[:4]}-{chars[4:]}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class DsrRequest(db.Model):
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
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200))
    jurisdiction: Mapped[str] = mapped_column(String(8))
    details: Mapped[str] = mapped_column(Text, default="")

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
    hold_reason: Mapped[str | None] = mapped_column(Text)
    hold_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hold_pauses_clock: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)

    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    denial_code: Mapped[str | None] = mapped_column(String(32))
    denial_text: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_request.id", ondelete="SET NULL"))

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
    assignee = relationship("StaffUser", foreign_keys=[assignee_id])
    decided_by = relationship("StaffUser", foreign_keys=[decided_by_id])
    duplicate_of = relationship("DsrRequest", remote_side=[id])

    @property
    def status_enum(self) -> RequestStatus:
        return RequestStatus(self.status)

    def __repr__(self) -> str:
        return f"<DsrRequest {self.reference} {self.request_type} {self.status}>"


class CorrectionItem(db.Model):
    __tablename__ = "correction_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("dsr_request.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    proposed_value: Mapped[str] = mapped_column(String(254))
    current_value: Mapped[str | None] = mapped_column(String(254))
    decision: Mapped[str] = mapped_column(String(16), default="pending")  # pending/approved/rejected
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(254))

    dsr: Mapped[DsrRequest] = relationship(back_populates="corrections")


class Token(db.Model):
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

    dsr: Mapped[DsrRequest] = relationship()

    @staticmethod
    def generate() -> tuple[str, str]:
        raw = secrets.token_urlsafe(32)
        return raw, hash_token(raw)


class Export(db.Model):
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


class AppSetting(db.Model):
    """Small admin-controlled switches (for example: require TOTP for all staff)."""

    __tablename__ = "app_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(254))
