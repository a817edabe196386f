"""Models of the AI API platform's database (``PLATFORM_DATABASE_URL``, bind ``platform``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models_base import BigId, Model, UTCDateTime, utcnow


class Account(Model):
    __bind_key__ = "platform"
    __tablename__ = "platform_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active / closed
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    analytics_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64))


class ApiKey(Model):
    __bind_key__ = "platform"
    __tablename__ = "platform_api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_account.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsageRecord(Model):
    __bind_key__ = "platform"
    __tablename__ = "platform_usage"
    __table_args__ = (
        Index("ix_platform_usage_account_time", "account_id", "created_at"),
        # Exports stream and deletions cut batches in id order per account: this index serves both
        # without sorting the account's rows (millions for a heavy customer).
        Index("ix_platform_usage_account_id_id", "account_id", "id"),
        Index("ix_platform_usage_time", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)
    key_prefix: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(40))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SupportMessage(Model):
    __bind_key__ = "platform"
    __tablename__ = "platform_support_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("platform_account.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # inbound / outbound
    subject: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
