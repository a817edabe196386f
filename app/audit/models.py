"""AuditEvent: one row per thing that happened. Written, never changed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import BigId, Model, UTCDateTime, utcnow


class AuditEvent(Model):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_request_time", "request_id", "occurred_at"),
        Index("ix_audit_event_event_time", "event", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_label: Mapped[str] = mapped_column(String(254), default="")
    # Not foreign keys: the trail outlives purged request records.
    request_id: Mapped[int | None] = mapped_column(Integer)
    request_reference: Mapped[str | None] = mapped_column(String(32), index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(String(1000), default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(45))

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.event} {self.request_reference}>"
