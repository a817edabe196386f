"""One row per message read from the privacy mailbox: the record that it was processed (once).

``(mailbox, uid_validity, uid)`` is the message's IMAP identity (unique: every message on the server has
exactly one row, the record that it was read). ``message_id_hash`` (SHA-256 of its Message-ID, or of the
raw message when it has none) with ``content_hash`` (its sender, recipients, subject, date and body) is its
identity across folders and UIDVALIDITY changes: the first row of a message carries ``dedupe_key``
(unique), a copy of it read again gets a row of its own with status ``duplicate`` and ``duplicate_of_id``,
and is never acted on twice. A different mail that reuses a Message-ID is not a copy: its content
differs, so it is read as the new message it is. Rows stay (minimised) for as long as the mail could be
read again.

``status``: ``new`` (an intake item for staff), ``threaded`` (a reply, on its request's thread),
``converted`` (staff made a request of it), ``dismissed``, ``duplicate`` (a copy of an earlier
message). Once a message is on a request's thread its
text and files live there (``RequestMessage``) and this row keeps metadata only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models_base import Model, UTCDateTime, utcnow


class InboundMail(Model):
    __tablename__ = "inbound_mail"
    __table_args__ = (
        UniqueConstraint("mailbox", "uid_validity", "uid", name="uq_inbound_mail_mailbox_uid"),
        Index("ix_inbound_mail_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    uid_validity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id_hash: Mapped[str] = mapped_column(String(64), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Set on the one row that acts on a message (unique); None on a duplicate's row.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_mail.id", ondelete="SET NULL"))
    # Personal data, until the row is minimised: the sender, the subject line, the text, the files.
    message_id: Mapped[str | None] = mapped_column(String(255))
    from_addr: Mapped[str | None] = mapped_column(String(254))
    from_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # The keyed hash of the sender's mailbox however spelled (``app.portal.mailbox.normalise_mailbox``):
    # erasure of sam@gmail.com reaches mail from sam+x@gmail.com and s.am@googlemail.com.
    mailbox_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    from_name: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(254))
    body_text: Mapped[str | None] = mapped_column(Text)
    # [{"name", "type", "size", "key"}]: files kept (``app.dsr.attachments``) until staff act on the item.
    attachments: Mapped[list | None] = mapped_column(JSON)
    # [{"name", "type", "size", "reason"}]: files refused for their size or type (never stored).
    refused: Mapped[list | None] = mapped_column(JSON)
    html_only: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    too_large: Mapped[bool] = mapped_column(Boolean, default=False)
    # Reading it failed in a way nobody foresaw (the error's name is in ``refused``): it waits for staff,
    # and stays on the server for a person to open there.
    unreadable: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The server still holds the message (too large, unreadable, or MAIL_IMAP_KEEP). Once the row is
    # minimised (erasure, retention) the next run deletes the server's copy too.
    on_server: Mapped[bool] = mapped_column(Boolean, default=True, server_default="0")
    size: Mapped[int] = mapped_column(Integer, default=0)
    # The mail's date (never later than the server received it, nor than now): the date received.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="new")
    # How a reply was matched: ``reply_address`` (privacy+<token>@), ``in_reply_to`` or ``references``.
    matched_by: Mapped[str | None] = mapped_column(String(16))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_request.id", ondelete="SET NULL"), index=True)
    # A reply to a request that is closed: shown to staff beside the intake item, never threaded.
    related_request_id: Mapped[int | None] = mapped_column(ForeignKey("dsr_request.id", ondelete="SET NULL"))
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id"))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismiss_reason: Mapped[str | None] = mapped_column(String(32))
    minimised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    dsr = relationship("DsrRequest", foreign_keys=[request_id])
    related = relationship("DsrRequest", foreign_keys=[related_request_id])
    handled_by = relationship("StaffUser")

    def __repr__(self) -> str:
        return f"<InboundMail {self.id} uid={self.uid} {self.status}>"
