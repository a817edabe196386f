"""Outgoing mail: written to the database first, then sent by a job (so an outage loses nothing)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import Model, UTCDateTime, utcnow


class OutgoingMail(Model):
    """``status``: queued, sending (claimed by a send attempt at ``send_started_at``), sent, failed
    (refused for good). ``interrupted_sends`` counts attempts that died mid-send and were taken over:
    the message may have reached the recipient once more, with the same Message-ID."""

    __tablename__ = "outgoing_mail"
    __table_args__ = (Index("ix_outgoing_mail_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    # The recipient and the bodies are personal data: once a message is sent its bodies lose their link
    # tokens (``redacted_at``), and when the request is minimised or its subject erased only metadata
    # stays (template, Message-ID, ``to_hash``, sent_at).
    to_addr: Mapped[str | None] = mapped_column(String(254), index=True)
    to_hash: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(254))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    minimised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    template: Mapped[str] = mapped_column(String(64))
    # The request's reply address (``Reply-To``) when the privacy mailbox is read (``MAIL_IMAP_URL``).
    reply_to: Mapped[str | None] = mapped_column(String(254))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_request.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    interrupted_sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
